// Parses Mermaid diagrams with Mermaid's own parser (npm `mermaid`, in a jsdom window since it
// expects a browser): reads a JSON list of diagrams on stdin, prints a JSON list of errors (null
// for a diagram that parses). tests/test_dossier.py runs it.
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
const diagrams = JSON.parse(readFileSync(0, "utf8"));
const errors = [];
for (const text of diagrams) {
  try {
    await mermaid.parse(text);
    errors.push(null);
  } catch (e) {
    errors.push(String(e.message || e));
  }
}
console.log(JSON.stringify(errors));
