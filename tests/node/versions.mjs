// Prints the installed versions of the JavaScript packages the tests use, as JSON (tests/test_node_clients.py).
import { readFileSync } from "node:fs";

const names = JSON.parse(readFileSync(new URL("./package.json", import.meta.url))).dependencies;
const installed = {};
for (const name of Object.keys(names)) {
  const manifest = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  installed[name] = JSON.parse(readFileSync(manifest)).version;
}
console.log(JSON.stringify({ node: process.versions.node, installed }));
