#!/usr/bin/env node
// Offline build of the Solidity contracts with solc-js (npm `solc`, the
// compiler ships inside the package; nothing is downloaded).
//
//   node contracts/build.mjs           compile and write the artifacts
//   node contracts/build.mjs --check   compile in memory; exit 1 when a committed
//                                      artifact differs from what the sources give
//
// Artifacts: {contractName, abi, bytecode, deployedBytecode, compiler, settings,
// sourceSha256}. sourceSha256 is the sha256 of the contract's source files (the
// ones its metadata lists), each as "<path>\0<content>\0", sorted by path.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const solc = require('solc');

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const CONTRACTS = join(ROOT, 'contracts');

// Settings recorded in every artifact. evmVersion is pinned to prague: the
// embedded eth-tester chain (py-evm) runs up to prague, anvil runs it too.
// Optimizer: the IR pipeline with runs 200 gave the least gas on the task path
// (create + assign + commit + finalize: 249,217 against 250,831 without it);
// runs 10,000 saved 241 gas more but made the deployment 40 % larger. See
// docs/contracts.md and `python -m benchmarks.gas`.
const SETTINGS = {
  evmVersion: 'prague',
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
  metadata: { bytecodeHash: 'ipfs' },
};

// Which contract goes where (paths relative to the repository root).
const TARGETS = [
  {
    source: 'contracts/TaskMarket.sol',
    name: 'TaskMarket',
    out: 'gensyn_jupyter/chain/artifacts/TaskMarket.json',
  },
  {
    source: 'contracts/test/Reentrant.sol',
    name: 'Reentrant',
    out: 'tests/chain/artifacts/Reentrant.json',
  },
];

function solidityFiles(dir) {
  return readdirSync(dir, { recursive: true })
    .filter((name) => name.endsWith('.sol'))
    .map((name) => relative(ROOT, join(dir, name)).split(sep).join('/'))
    .sort();
}

function compile() {
  const sources = {};
  for (const path of solidityFiles(CONTRACTS)) {
    sources[path] = { content: readFileSync(join(ROOT, path), 'utf8') };
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: {
        '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'metadata'] },
      },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors ?? [];
  for (const problem of problems) {
    process.stderr.write(problem.formattedMessage ?? `${problem.severity}: ${problem.message}\n`);
  }
  if (problems.some((p) => p.severity === 'error')) {
    process.stderr.write('contracts/build.mjs: compilation failed\n');
    process.exit(1);
  }
  const artifacts = new Map();
  for (const target of TARGETS) {
    const compiled = output.contracts?.[target.source]?.[target.name];
    if (!compiled) {
      process.stderr.write(`contracts/build.mjs: ${target.source} has no contract ${target.name}\n`);
      process.exit(1);
    }
    const metadata = JSON.parse(compiled.metadata);
    const hash = createHash('sha256');
    for (const path of Object.keys(metadata.sources).sort()) {
      hash.update(`${path}\0${sources[path].content}\0`);
    }
    const artifact = {
      contractName: target.name,
      abi: compiled.abi,
      bytecode: `0x${compiled.evm.bytecode.object}`,
      deployedBytecode: `0x${compiled.evm.deployedBytecode.object}`,
      compiler: solc.version(),
      settings: SETTINGS,
      sourceSha256: hash.digest('hex'),
    };
    artifacts.set(target.out, `${JSON.stringify(artifact, null, 2)}\n`);
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes('--check');
  const artifacts = compile();
  if (check) {
    const stale = [];
    for (const [out, text] of artifacts) {
      const path = join(ROOT, out);
      if (!existsSync(path)) stale.push(`${out} (missing)`);
      else if (readFileSync(path, 'utf8') !== text) stale.push(out);
    }
    if (stale.length) {
      process.stderr.write(
        `contracts/build.mjs --check: these artifacts do not match contracts/*.sol ` +
          `compiled with solc ${solc.version()}:\n  ${stale.join('\n  ')}\n` +
          `Run \`npm run build:contracts\` and commit the result.\n`,
      );
      process.exit(1);
    }
    process.stdout.write(`contracts/build.mjs --check: ${artifacts.size} artifacts up to date\n`);
    return;
  }
  for (const [out, text] of artifacts) {
    const path = join(ROOT, out);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    process.stdout.write(`wrote ${out}\n`);
  }
}

main();
