'use strict';
// kiln's JavaScript cell driver, run by kiln_js_kernel.py as
//   node --expose-internals kiln_js_driver.js <command fd> <response fd>
//
// Protocol (JSON lines): the kernel writes {"id": <string>, "code": <string>}
// to the command fd (and {"interrupt": <id>} next to a SIGINT, which ends a
// cell waiting on a top-level await even when the signal is lost); for each command the driver writes exactly one
// {"id", "status": "ok", "result": <util.inspect text or null>, "cwd"} or
// {"id", "status": "error", "ename", "evalue", "traceback": [lines],
//  "interrupted": bool, "cwd"} to the response fd. At start it writes
// {"id": "ready", "status": "ok", "cwd"}.
// Cell output is the process's own stdout/stderr (console.log/info ->
// stdout, console.error/warn -> stderr); both are pipes to the kernel, which
// are synchronous in node on Linux, so a response is written after all
// output of its cell.
//
// Cells run in this process's main context (vm.Script.runInThisContext, as
// the standalone node REPL does), so top-level var/let/const/function/class
// declarations persist from cell to cell. Code using top-level `await` is
// rewritten by node's own REPL transform (internal/repl/await, reachable
// with --expose-internals) or, without it, wrapped in an async function.
// SIGINT interrupts a running cell (breakOnSigint for synchronous code, a
// SIGINT listener for a pending await).

const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const vm = require('vm');
const Module = require('module');

const commandFd = Number(process.argv[2]);
const responseFd = Number(process.argv[3]);
if (!Number.isInteger(commandFd) || !Number.isInteger(responseFd)) {
  process.stderr.write('usage: node kiln_js_driver.js <command fd> <response fd>\n');
  process.exit(2);
}

const driverFile = __filename;
const JSONstringify = JSON.stringify;
const JSONparse = JSON.parse;
const writeSync = fs.writeSync;
const inspect = util.inspect;

let processTopLevelAwait = null;
try {
  // eslint-disable-next-line node/no-missing-require
  processTopLevelAwait = require('internal/repl/await').processTopLevelAwait;
} catch (e) {
  processTopLevelAwait = null;
}

function respond(obj) {
  let cwd = null;
  try { cwd = process.cwd(); } catch (e) { cwd = null; }
  obj.cwd = cwd;
  const data = Buffer.from(JSONstringify(obj) + '\n', 'utf8');
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(responseFd, data, off, data.length - off);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      process.exit(1);
    }
  }
}

// {"phase": "run"} before a vm script runs and {"phase": "wait"} when the
// cell waits on a top-level await: the kernel interrupts "run" with SIGINT
// and "wait" with an {"interrupt"} command.
function phase(name) {
  const data = Buffer.from(JSONstringify({ phase: name }) + '\n', 'utf8');
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(responseFd, data, off, data.length - off);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      process.exit(1);
    }
  }
}

// ---------------------------------------------------------------------------
// The global environment user code sees (like the node REPL's).

function cwdRequire() {
  let dir;
  try { dir = process.cwd(); } catch (e) { dir = '/'; }
  return Module.createRequire(path.join(dir, '[kiln-cell]'));
}

function userRequire(id) {
  return cwdRequire()(id);
}
userRequire.resolve = function resolve(request, options) {
  return cwdRequire().resolve(request, options);
};
userRequire.cache = require.cache;
userRequire.main = undefined;

function defineGlobal(name, value) {
  Object.defineProperty(globalThis, name, {
    value, writable: true, configurable: true, enumerable: false,
  });
}

// console writes straight to fds 1 and 2 (synchronously), independent of
// the state of process.stdout/process.stderr streams.
function fdWriter(fd) {
  const stream = new (require('events').EventEmitter)();
  Object.assign(stream, {
    write(chunk, encoding, callback) {
      const data = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      let off = 0;
      while (off < data.length) {
        try {
          off += writeSync(fd, data, off, data.length - off);
        } catch (e) {
          if (e.code !== 'EAGAIN') break;
        }
      }
      if (typeof encoding === 'function') encoding();
      else if (typeof callback === 'function') callback();
      return true;
    },
  });
  return stream;
}
defineGlobal('console', new console.Console({ stdout: fdWriter(1), stderr: fdWriter(2), colorMode: false }));

defineGlobal('require', userRequire);
const userModule = new Module('[kiln-cell]', null);
userModule.paths = Module._nodeModulePaths(process.cwd());
defineGlobal('module', userModule);
defineGlobal('exports', userModule.exports);

// Built-in modules available as globals on first use (`os.platform()`), as
// in the node REPL. Assigning or declaring the name replaces the getter.
for (const name of Module.builtinModules) {
  if (!/^[a-z][a-z0-9_]*$/i.test(name) || name in globalThis) continue;
  Object.defineProperty(globalThis, name, {
    configurable: true,
    enumerable: false,
    get() {
      const value = require(name);
      defineGlobal(name, value);
      return value;
    },
    set(value) {
      defineGlobal(name, value);
    },
  });
}

// Errors thrown later by timers/callbacks of earlier cells must not kill
// the process: print them like the REPL does.
process.on('uncaughtException', (err) => {
  process.stderr.write('Uncaught ' + formatThrown(err) + '\n');
});
process.on('unhandledRejection', (reason) => {
  process.stderr.write('Uncaught (in promise) ' + formatThrown(reason) + '\n');
});

// ---------------------------------------------------------------------------
// Errors

function isErrorLike(e) {
  return e !== null && typeof e === 'object' && typeof e.message === 'string' &&
    (typeof e.stack === 'string' || typeof e.name === 'string');
}

function formatThrown(e) {
  if (isErrorLike(e) && typeof e.stack === 'string') return cleanStack(e.stack).join('\n');
  try { return inspect(e); } catch (x) { return String(e); }
}

// Drops the frames of this driver and of node's vm machinery from a stack.
function cleanStack(stack) {
  const lines = String(stack).split('\n');
  const out = [];
  for (const line of lines) {
    const t = line.trim();
    if (t.startsWith('at ') &&
        (t.includes(driverFile) || t.includes('(node:') || t.startsWith('at node:'))) {
      continue;
    }
    out.push(line);
  }
  return out;
}

function errorResponse(id, e, interrupted) {
  if (interrupted) {
    return {
      id, status: 'error', ename: 'KeyboardInterrupt',
      evalue: 'Script execution was interrupted by SIGINT',
      traceback: ['KeyboardInterrupt: Script execution was interrupted by SIGINT'],
      interrupted: true,
    };
  }
  if (isErrorLike(e)) {
    let ename = 'Error';
    try {
      ename = typeof e.name === 'string' && e.name ? e.name
        : (e.constructor && e.constructor.name) || 'Error';
    } catch (x) { /* keep default */ }
    const traceback = typeof e.stack === 'string' ? cleanStack(e.stack) : [ename + ': ' + e.message];
    return { id, status: 'error', ename, evalue: e.message, traceback, interrupted: false };
  }
  let text;
  try { text = inspect(e); } catch (x) { text = String(e); }
  return {
    id, status: 'error', ename: 'Uncaught', evalue: text,
    traceback: ['Uncaught ' + text], interrupted: false,
  };
}

function isInterrupt(e) {
  return e !== null && typeof e === 'object' && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
}

// ---------------------------------------------------------------------------
// Compiling a cell

let cellNumber = 0;

function compile(source, filename) {
  return new vm.Script(source, {
    filename,
    displayErrors: true,
    importModuleDynamically: (specifier) => import(specifier),
  });
}

function hasAwait(code) {
  return /\bawait\b/.test(code) || /\bfor\s+await\b/.test(code);
}

// Returns {script, isAsync} or throws the SyntaxError of the plain source.
function compileCell(code, filename) {
  const candidates = [];
  // `{ a: 1 }` is an object, not a block (node REPL rule).
  if (/^\s*{/.test(code) && !/;\s*$/.test(code)) {
    candidates.push({ source: '(' + code.trim() + '\n)', isAsync: false, value: false });
  }
  if (hasAwait(code)) {
    if (processTopLevelAwait) {
      try {
        const wrapped = processTopLevelAwait(code);
        if (wrapped !== null) candidates.push({ source: wrapped, isAsync: true, value: true });
      } catch (e) { /* not transformable: fall through */ }
    } else {
      candidates.push({ source: '(async () => {\n' + code + '\n})()', isAsync: true, value: false });
    }
  }
  for (const c of candidates) {
    try {
      return { script: compile(c.source, filename), isAsync: c.isAsync, value: c.value };
    } catch (e) { /* try the next form */ }
  }
  return { script: compile(code, filename), isAsync: false, value: false };
}

// ---------------------------------------------------------------------------
// Running a cell

let pendingInterrupt = null;  // rejects the await of a running async cell

process.on('SIGINT', () => {
  if (pendingInterrupt) pendingInterrupt();
});

// A SIGINT that reaches node while a breakOnSigint script is finishing can be
// swallowed and then interrupt the NEXT script run instead. Running an empty
// script first absorbs such a stale interrupt (a real one is repeated by the
// kernel, and asynchronous waits are also interrupted through the command
// pipe).
const flushScript = new vm.Script('0', { filename: '[kiln-flush]' });
function flushStaleInterrupt() {
  for (let i = 0; i < 3; i++) {
    try {
      flushScript.runInThisContext({ breakOnSigint: true });
      return;
    } catch (e) {
      if (!isInterrupt(e)) return;
    }
  }
}

async function runCell(id, code) {
  cellNumber += 1;
  flushStaleInterrupt();
  const filename = '<cell' + cellNumber + '>';
  let compiled;
  try {
    compiled = compileCell(code, filename);
  } catch (e) {
    return errorResponse(id, e, false);
  }
  let value;
  phase('run');
  for (let attempt = 0; ; attempt++) {
    try {
      // displayErrors false: no source-line/caret block on runtime errors (a
      // SyntaxError from compile() keeps it).
      value = compiled.script.runInThisContext({ displayErrors: false, breakOnSigint: true });
      break;
    } catch (e) {
      if (!isInterrupt(e)) return errorResponse(id, e, false);
      // The kernel writes {"interrupt": id} before each SIGINT it sends for
      // this cell; without one this is a stale interrupt left by node's
      // SIGINT watchdog (it strikes as a script starts): run again.
      readCommandsSync();
      if (interruptsSeen.has(id) || attempt >= 2) return errorResponse(id, e, true);
    }
  }
  if (compiled.isAsync) {
    phase('wait');
    let interrupted = false;
    const interrupt = new Promise((resolve, reject) => {
      pendingInterrupt = () => { interrupted = true; reject(new Error('interrupted')); };
    });
    interrupt.catch(() => {});
    try {
      const settled = await Promise.race([Promise.resolve(value), interrupt]);
      value = compiled.value ? (settled && settled.value) : undefined;
    } catch (e) {
      return errorResponse(id, e, interrupted);
    } finally {
      pendingInterrupt = null;
    }
  }
  if (value === undefined) return { id, status: 'ok', result: null };
  let text;
  try {
    text = inspect(value, { showProxy: true });
  } catch (e) {
    text = Object.prototype.toString.call(value);
  }
  return { id, status: 'ok', result: text };
}

// ---------------------------------------------------------------------------
// Command loop

const queue = [];
let busy = false;

async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length > 0) {
    const msg = queue.shift();
    let response;
    try {
      response = await runCell(msg.id, String(msg.code));
    } catch (e) {
      response = errorResponse(msg.id, e, false);
    }
    respond(response);
  }
  busy = false;
}

const interruptsSeen = new Set();
let buffered = '';

function feed(chunk) {
  buffered += chunk;
  let nl;
  while ((nl = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    if (!line.trim()) continue;
    let msg;
    try {
      msg = JSONparse(line);
    } catch (e) {
      continue;
    }
    if (msg && msg.interrupt !== undefined) {
      // {"interrupt": <cell id>}: the kernel interrupts that cell.
      interruptsSeen.add(String(msg.interrupt));
      if (interruptsSeen.size > 64) interruptsSeen.delete(interruptsSeen.values().next().value);
      if (pendingInterrupt) pendingInterrupt();
      continue;
    }
    queue.push(msg);
  }
}

// Reads what the kernel has written so far while a cell blocks the event loop.
const readBuffer = Buffer.alloc(65536);
const utf8 = new (require('string_decoder').StringDecoder)('utf8');
function readCommandsSync() {
  for (;;) {
    let n;
    try {
      n = fs.readSync(commandFd, readBuffer, 0, readBuffer.length, null);
    } catch (e) {
      return;  // EAGAIN: nothing more
    }
    if (n <= 0) return;
    feed(utf8.write(readBuffer.subarray(0, n)));
  }
}

const commands = new net.Socket({ fd: commandFd, readable: true, writable: false });
commands.on('data', (chunk) => {
  feed(utf8.write(chunk));
  pump();
});
commands.on('end', () => process.exit(0));
commands.on('error', () => process.exit(1));

respond({ id: 'ready', status: 'ok' });
