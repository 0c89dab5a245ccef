// Validate GLB files with the Khronos glTF validator (npm package `gltf-validator`).
//
// Usage: node validate.mjs MODULE_DIR FILE.glb [FILE.glb ...]
// MODULE_DIR is the directory that holds the `gltf-validator` package (a node_modules folder),
// passed in by exporters/validate.py so the script works wherever the package was installed.
// Prints one JSON array on stdout: the validator's report for each file, in order.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';

const [moduleDir, ...files] = process.argv.slice(2);
if (!moduleDir || files.length === 0) {
  console.error('usage: node validate.mjs MODULE_DIR FILE.glb [FILE.glb ...]');
  process.exit(64);
}
const require = createRequire(import.meta.url);
const validator = require(path.resolve(moduleDir, 'gltf-validator'));

const reports = [];
for (const file of files) {
  const data = new Uint8Array(await readFile(file));
  const report = await validator.validateBytes(data, {
    uri: path.basename(file),
    maxIssues: 200,
    // A GLB from the exporter embeds everything; any external reference is itself a problem.
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource not allowed: ${uri}`)),
  });
  reports.push(report);
}
process.stdout.write(JSON.stringify(reports));
