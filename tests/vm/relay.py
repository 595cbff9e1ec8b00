"""One connection from a VM's guestfwd, relayed to a TCP port on the host's loopback.

qemu runs it once per connection the guest opens (`guestfwd=tcp:IP:PORT-cmd:python3 relay.py N`),
with the guest's stream on stdin and stdout: mirror mode's way to a package proxy on 127.0.0.1
while the VM's network stays restricted to what is forwarded."""

import os
import select
import socket
import sys


def main() -> None:
    conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    fds = {0: conn.fileno(), conn.fileno(): 1}
    while True:
        for fd in select.select(list(fds), [], [])[0]:
            data = os.read(fd, 65536) if fd == 0 else conn.recv(65536)
            if not data:
                return
            if fd == 0:
                conn.sendall(data)
            else:
                os.write(1, data)


if __name__ == "__main__":
    main()
