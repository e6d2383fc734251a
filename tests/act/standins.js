// Stand-ins for third-party actions when act runs the action's workflows here (no network, no
// Docker). Each records the inputs it was given as a JSON line in $NBCI_ACT_RECORD/<action>.jsonl,
// so tests can assert them, and does the minimum the next steps need. Every stand-in's main.js
// loads this file from $NBCI_ACT_DIR: act copies an action's folder alone, not its neighbours.
"use strict";

const childProcess = require("child_process");
const crypto = require("crypto");
const fs = require("fs");
const os = require("os");
const path = require("path");

function env(name) {
  const value = process.env[name];
  if (!value) fail(`stand-in: ${name} is not set (tests/test_action.py sets it)`);
  return value;
}

function fail(message) {
  console.log(`::error::${message}`);
  process.exit(1);
}

// The inputs as the runner passes them (INPUT_<NAME>), with the names written as in action.yml.
function inputs() {
  const found = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("INPUT_")) found[key.slice("INPUT_".length).toLowerCase()] = value;
  }
  return found;
}

function record(action, stage) {
  const given = inputs();
  const dir = env("NBCI_ACT_RECORD");
  fs.mkdirSync(dir, { recursive: true, verbatimSymlinks: true });
  fs.appendFileSync(path.join(dir, `${action}.jsonl`), JSON.stringify({ stage, inputs: given }) + "\n");
  return given;
}

function setOutput(name, value) {
  fs.appendFileSync(env("GITHUB_OUTPUT"), `${name}=${value}\n`);
}

function expandHome(p) {
  return p === "~" || p.startsWith("~/") ? path.join(os.homedir(), p.slice(1)) : p;
}

function lines(text) {
  return (text || "").split("\n").map((s) => s.trim()).filter(Boolean);
}

function venv(dir) {
  childProcess.execFileSync("python3", ["-m", "venv", dir], { stdio: "inherit" });
  return path.join(dir, "bin");
}

// actions/setup-python: a venv of the host's python3 on PATH (whatever version was asked), kept like
// the hosted tool cache at one path for the whole test session, beside the cache store: so an
// environment built on it in one run and restored from the cache in the next finds its Python.
exports.setupPython = () => {
  const given = record("setup-python", "main");
  if (given.cache) {
    const dependency = given["cache-dependency-path"];
    if (!dependency || !fs.existsSync(dependency)) {
      fail(`No file in ${process.cwd()} matched to [${dependency || "**/requirements.txt"}], make sure you have checked out the target repository`);
    }
  }
  const toolcache = path.join(path.dirname(env("NBCI_ACT_CACHE")), "setup-python-standin");
  const bin = fs.existsSync(path.join(toolcache, "bin", "python")) ? path.join(toolcache, "bin") : venv(toolcache);
  fs.appendFileSync(env("GITHUB_PATH"), bin + "\n");
  const python = path.join(bin, "python");
  const version = childProcess.execFileSync(python, ["-c", "import platform; print(platform.python_version())"]);
  setOutput("python-version", version.toString().trim());
  setOutput("python-path", python);
  setOutput("cache-hit", "false");
};

// conda-incubator/setup-miniconda: $CONDA with a conda.sh whose `conda activate` puts a venv
// (the "environment") first on PATH, and a `conda install` that pip-installs into it.
exports.setupMiniconda = () => {
  const given = record("setup-miniconda", "main");
  const file = given["environment-file"];
  if (file && !fs.existsSync(file)) fail(`stand-in: environment-file ${file} does not exist`);
  const conda = path.join(env("RUNNER_TEMP"), "miniconda-standin");
  const target = given["activate-environment"];  // a name under $CONDA/envs, a prefix path, or none
  if (target) venv(target.includes("/") ? target : path.join(conda, "envs", target));
  fs.mkdirSync(path.join(conda, "etc", "profile.d"), { recursive: true, verbatimSymlinks: true });
  fs.writeFileSync(path.join(conda, "etc", "profile.d", "conda.sh"), [
    `export CONDA_EXE="${conda}/bin/conda"`,
    'conda() {',
    '  if [ "$1" = activate ]; then',
    '    case $2 in */*) prefix=$2 ;; *) prefix="$CONDA/envs/$2" ;; esac',
    '    [ -x "$prefix/bin/python" ] || { echo "stand-in conda: no environment at $prefix" >&2; return 1; }',
    '    export CONDA_PREFIX="$prefix" CONDA_DEFAULT_ENV="$2" PATH="$prefix/bin:$PATH"',
    '  else "$CONDA_EXE" "$@"; fi',
    '}',
    "",
  ].join("\n"));
  fs.mkdirSync(path.join(conda, "bin"), { recursive: true, verbatimSymlinks: true });
  fs.writeFileSync(path.join(conda, "bin", "conda"), [
    "#!/usr/bin/env bash",
    "# stand-in: `conda install --yes --prefix P PKG...` pip-installs PKG into P",
    'set -euo pipefail',
    'echo "conda $*" >> "$NBCI_ACT_RECORD/conda-commands.txt"',
    '[ "$1" = install ] || { echo "stand-in conda: only install" >&2; exit 1; }',
    'shift; prefix=""; pkgs=()',
    'while [ $# -gt 0 ]; do case $1 in --prefix|-p) prefix=$2; shift 2;; -*) shift;; *) pkgs+=("$1"); shift;; esac; done',
    '"$prefix/bin/python" -m pip install --quiet "${pkgs[@]}"',
    "",
  ].join("\n"), { mode: 0o755 });
  fs.appendFileSync(env("GITHUB_ENV"), `CONDA=${conda}\n`);
  setOutput("environment-file", file ? path.resolve(file) : "");
  setOutput("environment-file-content", "");
  setOutput("environment-file-was-patched", "false");
};

// mamba-org/setup-micromamba: $MAMBA_EXE, a script whose `shell hook` defines a `micromamba`
// function that activates a venv (the environment, under the root's envs/) and whose `install`
// pip-installs into it; exports MAMBA_EXE and MAMBA_ROOT_PREFIX as the action does.
exports.setupMicromamba = () => {
  const given = record("setup-micromamba", "main");
  const file = given["environment-file"];
  if (file && !fs.existsSync(file)) fail(`stand-in: environment-file ${file} does not exist`);
  const root = given["micromamba-root-path"] || path.join(os.homedir(), "micromamba");
  const name = given["environment-name"];
  const prefix = name ? path.join(root, "envs", name) : "";
  if (prefix) venv(prefix);
  const bin = path.join(env("RUNNER_TEMP"), "micromamba-standin");
  fs.mkdirSync(bin, { recursive: true, verbatimSymlinks: true });
  const mamba = path.join(bin, "micromamba");
  fs.writeFileSync(mamba, [
    "#!/usr/bin/env bash",
    "# stand-in: `shell hook` prints the activation function; `install -p P PKG...` pip-installs PKG into P",
    'set -euo pipefail',
    'echo "micromamba $*" >> "$NBCI_ACT_RECORD/micromamba-commands.txt"',
    'if [ "$1" = shell ]; then',
    "  cat <<'HOOK'",
    'micromamba() {',
    '  [ "$1" = activate ] || { "$MAMBA_EXE" "$@"; return; }',
    '  [ -x "$2/bin/python" ] || { echo "stand-in micromamba: no environment at $2" >&2; return 1; }',
    '  export CONDA_PREFIX="$2" PATH="$2/bin:$PATH"',
    '}',
    'HOOK',
    '  exit 0',
    'fi',
    '[ "$1" = install ] || { echo "stand-in micromamba: only shell hook and install" >&2; exit 1; }',
    'shift; prefix=""; pkgs=()',
    'while [ $# -gt 0 ]; do case $1 in --prefix|-p) prefix=$2; shift 2;; --channel|-c) shift 2;; -*) shift;; *) pkgs+=("$1"); shift;; esac; done',
    '"$prefix/bin/python" -m pip install --quiet "${pkgs[@]}"',
    "",
  ].join("\n"), { mode: 0o755 });
  fs.appendFileSync(env("GITHUB_ENV"), `MAMBA_EXE=${mamba}\nMAMBA_ROOT_PREFIX=${root}\n`);
  fs.appendFileSync(env("GITHUB_PATH"), bin + "\n");
  setOutput("environment-path", prefix);
};

// prefix-dev/setup-pixi: `pixi install` of the manifest's environment, played by a venv with
// ipykernel at .pixi/envs/<name> beside the manifest (where pixi puts it).
exports.setupPixi = () => {
  const given = record("setup-pixi", "main");
  const manifest = given["manifest-path"] || "pixi.toml";
  if (!fs.existsSync(manifest)) fail(`stand-in: manifest-path ${manifest} does not exist`);
  if (given.locked === "true" && !fs.existsSync(path.join(path.dirname(manifest), "pixi.lock"))) {
    fail("stand-in: locked: true, but there is no pixi.lock beside the manifest");
  }
  if (given["run-install"] === "false") return;
  for (const name of (given.environments || "default").split(/\s+/).filter(Boolean)) {
    const bin = venv(path.join(path.dirname(manifest), ".pixi", "envs", name));
    childProcess.execFileSync(path.join(bin, "python"), ["-m", "pip", "install", "--quiet", "ipykernel"], { stdio: "inherit" });
  }
};

// actions/cache: entries are folders under $NBCI_ACT_CACHE; restore by key, then restore-keys
// prefixes (newest first); the post step saves when there was no exact hit. actions/cache/restore
// and actions/cache/save are the same halves, recorded as stages "restore" and "save".
function cacheEntry(key) {
  return path.join(env("NBCI_ACT_CACHE"), crypto.createHash("sha256").update(key).digest("hex").slice(0, 24));
}

exports.cacheRestore = (stage = "main") => {
  const given = record("cache", stage);
  const store = env("NBCI_ACT_CACHE");
  fs.mkdirSync(store, { recursive: true, verbatimSymlinks: true });
  let source = fs.existsSync(cacheEntry(given.key)) ? cacheEntry(given.key) : null;
  const hit = source !== null;
  for (const prefix of hit ? [] : lines(given["restore-keys"])) {
    const keys = fs.readdirSync(store).filter((f) => f.endsWith(".key"))
      .map((f) => ({ file: path.join(store, f), key: fs.readFileSync(path.join(store, f), "utf8") }))
      .filter((e) => e.key.startsWith(prefix))
      .sort((a, b) => fs.statSync(b.file).mtimeMs - fs.statSync(a.file).mtimeMs);
    if (keys.length) { source = keys[0].file.slice(0, -".key".length); break; }
  }
  if (source) {
    lines(given.path).forEach((p, i) => {
      const saved = path.join(source, String(i));
      if (fs.existsSync(saved)) fs.cpSync(saved, expandHome(p), { recursive: true, verbatimSymlinks: true });
    });
  }
  console.log(`stand-in cache: ${hit ? "hit" : source ? "restored from a restore key" : "miss"} for ${given.key}`);
  setOutput("cache-hit", String(hit));
  if (stage === "restore") {
    setOutput("cache-primary-key", given.key);
    setOutput("cache-matched-key", source ? fs.readFileSync(source + ".key", "utf8") : "");
  }
};

exports.cacheSave = (stage = "post") => {
  const given = record("cache", stage);
  const entry = cacheEntry(given.key);
  if (fs.existsSync(entry)) {
    // like actions/cache: an existing key is never overwritten (a warning, not a failure)
    if (stage === "save") console.log(`::warning::Failed to save: Unable to reserve cache with key ${given.key}, another job may be creating this cache.`);
    return;
  }
  lines(given.path).forEach((p, i) => {
    if (fs.existsSync(expandHome(p))) fs.cpSync(expandHome(p), path.join(entry, String(i)), { recursive: true, verbatimSymlinks: true });
  });
  fs.writeFileSync(entry + ".key", given.key);
};

// actions/upload-artifact: copy the files to $NBCI_ACT_ARTIFACTS/<name>/, like the artifact's
// root (a folder's contents), refusing a name already used in the run unless overwrite is true.
exports.uploadArtifact = () => {
  const given = record("upload-artifact", "main");
  const name = given.name || "artifact";
  const store = env("NBCI_ACT_ARTIFACTS");
  const target = path.join(store, name);
  fs.mkdirSync(store, { recursive: true, verbatimSymlinks: true });
  if (fs.existsSync(target) && given.overwrite !== "true") {
    fail(`Failed to CreateArtifact: an artifact with this name already exists on the workflow run (${name})`);
  }
  const paths = lines(given.path).map(expandHome);
  if (paths.some((p) => /[*?[]/.test(p))) fail("stand-in: globs in path are not supported");
  const found = paths.filter((p) => fs.existsSync(p));
  if (!found.length) {
    const message = `No files were found with the provided path: ${paths.join(", ")}. No artifacts will be uploaded.`;
    if (given["if-no-files-found"] === "error") fail(message);
    if (given["if-no-files-found"] !== "ignore") console.log(`::warning::${message}`);
    return;
  }
  const hidden = given["include-hidden-files"] === "true";
  const filter = (src) => hidden || !path.basename(src).startsWith(".");
  for (const p of found) {
    const dest = fs.statSync(p).isDirectory() ? target : path.join(target, path.basename(p));
    fs.cpSync(p, dest, { recursive: true, filter });
  }
  const id = fs.readdirSync(store).length;
  setOutput("artifact-id", String(id));
  setOutput("artifact-url", `${process.env.GITHUB_SERVER_URL}/${process.env.GITHUB_REPOSITORY}/actions/runs/${process.env.GITHUB_RUN_ID}/artifacts/${id}`);
  setOutput("artifact-digest", crypto.createHash("sha256").update(name + id).digest("hex"));
};
