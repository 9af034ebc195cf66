"""kiln's launcher for Debian's ipykernel 6.17 with less latency per cell.

Run it instead of `python3 -m ipykernel_launcher`:

    /usr/bin/python3 /path/to/kiln_ipykernel.py -f {connection_file}

It is the stock IPKernelApp/IPythonKernel with a few internal changes that
remove waiting, not behaviour. Profiling print(1) on the stock kernel
(perf_counter probes around every step, see the report in the commit) showed
that most of its ~4 ms was spent waiting, not computing:

* every sys.stdout/sys.stderr flush hands the buffer to the IOPub thread and
  waits for that thread to wake up, take the GIL, serialize and send
  (0.2-0.8 ms each, and a finished cell flushes both streams twice);
* a fixed time.sleep(0.0005) after the cell (Kernel._execute_sleep) that
  only papers over the flush being asynchronous;
* every IOPub message (status, execute_input, display) is queued for the
  IOPub thread, waking it (and fighting it for the GIL) each time;
* each shell message wakes the control thread to "flush the control queue",
  although 6.17 never waits for the result (it awaits the coroutine, not the
  future it returns), so the wake-up is pure overhead;
* `inspect.signature` runs twice per cell to learn whether do_execute and
  run_cell take `cell_id`.

What this module changes (each class below says why it keeps behaviour):

* FastIOPubThread: IOPub messages are sent directly by the thread that
  produces them, under a lock (a zmq socket may be used by several threads
  if every use is serialized, which the lock does). The IOPub thread still
  runs and still forwards output of forked subprocesses.
* FastOutStream: flush() sends at once in the calling thread; the 0.2 s
  "flush while a long cell runs" timer lives in one small thread (Flusher)
  that is only woken when a stream gets output and has no deadline yet.
  Output chunks keep their order (one lock per stream around take+send).
* Sends and flushes from the main thread defer SIGINT until the message is
  complete, so an interrupt can never leave half a multipart message on the
  IOPub socket or drop a chunk of output (the stock kernel never sends IOPub
  from the main thread, so it never had to care).
* A SIGINT that lands just before a blocking call in the main thread (the
  Python handler then waits for the call to return) is sent again
  (_SigintRedelivery); the stock kernel loses such an interrupt. The
  handler's frame is cut from the tracebacks the shell shows.
* A traceback that IPython fails to format is formatted by the standard
  library, and the error message still goes out (stock: none).
* FastKernel: _execute_sleep 0, no control-queue wake-up, cached
  `cell_id` signature checks.

Everything else (IPython shell, history, magics, display hooks, matplotlib
inline post_execute flush, input(), interrupts, parent polling) is the stock
code. kiln-interp starts this with the same environment as the stock kernel.
"""

import _signal
import codecs
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import threading
import time
import traceback
import types
import weakref

if __name__ == "__main__":
    # Python put this file's directory at sys.path[0]. Import ourselves under
    # our real name from there (IPython later replaces sys.modules['__main__']
    # with the user namespace), then put at sys.path[0] what
    # `python3 -m ipykernel_launcher` has there (the working directory), so
    # user code sees the same sys.path as with the stock launcher.
    import kiln_ipykernel as _self  # noqa: E402

    sys.path[0] = os.getcwd()
    _self.main()
    sys.exit(0)

import zmq  # noqa: E402

try:  # pyzmq's compiled send, without the Python layer of zmq.sugar (see _send_parts)
    from zmq.backend.cython.socket import Socket as _CSocket

    _csend = _CSocket.send
except ImportError:  # pragma: no cover - other pyzmq builds
    _csend = None
from ipykernel import ipkernel as _ipkernel  # noqa: E402
from ipykernel import kernelbase as _kernelbase  # noqa: E402
from ipykernel.iostream import IOPubThread, OutStream  # noqa: E402
from ipykernel.ipkernel import IPythonKernel  # noqa: E402
from ipykernel.kernelapp import IPKernelApp  # noqa: E402
from traitlets import Float, Type  # noqa: E402

_MAIN_THREAD_ID = threading.main_thread().ident
_SIGINT = int(signal.SIGINT)


# --------------------------------------------------------------------------
# SIGINT deferral for main-thread sends
# --------------------------------------------------------------------------

class _DeferSigint:
    """Context manager: while active in the main thread, a SIGINT is only
    recorded; on exit the previous handler is restored and, if a SIGINT came
    in, called (default_int_handler raises KeyboardInterrupt there).

    Without it a KeyboardInterrupt could be raised between two frames of a
    multipart send (the next message would then be glued to the broken one)
    or between taking a stream's buffer and sending it (output lost).
    Nested use only swaps handlers in the outermost level. Other threads
    never receive KeyboardInterrupt, so there it does nothing.
    """

    __slots__ = ()
    _depth = 0
    _prev = None
    _pending = None

    def __enter__(self):
        cls = _DeferSigint
        if threading.get_ident() != _MAIN_THREAD_ID:
            return self
        if cls._depth == 0:
            cls._pending = None
            cls._prev = None
            # _signal: the C functions behind signal.signal/getsignal
            # without their enum conversions (0.5 us instead of 6 us).
            prev = _signal.getsignal(_SIGINT)
            if callable(prev):
                # Only a Python-level handler can raise into this thread;
                # SIG_IGN / SIG_DFL (C handlers) are left alone.
                # signal.signal runs pending handlers before it swaps: a
                # KeyboardInterrupt can come out of this call, and then
                # nothing has changed (the depth is only counted below, so
                # it cannot leak and switch the deferral off for good).
                cls._prev = _signal.signal(_SIGINT, _record_sigint)
        cls._depth += 1
        return self

    def __exit__(self, *exc):
        cls = _DeferSigint
        if threading.get_ident() != _MAIN_THREAD_ID:
            return False
        cls._depth -= 1
        if cls._depth == 0 and cls._prev is not None:
            prev, cls._prev = cls._prev, None
            _signal.signal(_SIGINT, prev)
            pending, cls._pending = cls._pending, None
            if pending is not None:
                prev(*pending)
        return False


def _record_sigint(signum, frame):
    _DeferSigint._pending = (signum, frame)
    _sigint_redelivery.handled += 1


_defer_sigint = _DeferSigint()


# --------------------------------------------------------------------------
# SIGINT redelivery
# --------------------------------------------------------------------------

class _SigintRedelivery:
    """Sends SIGINT to the main thread again when CPython took one but its
    handler did not run.

    CPython's C-level handler only marks a signal as tripped. The Python
    handler (KeyboardInterrupt) runs at the main thread's next bytecode
    check, or when a blocking call returns EINTR. A SIGINT that lands after
    the last check but before a blocking call starts (time.sleep, a lock
    wait, select) stays tripped until that call returns by itself: in
    `print('start', flush=True); time.sleep(30)` an interrupt sent when
    'start' arrived was unnoticed for the whole 30 s in about one run of a
    hundred (the stock kernel has the same race).

    The C handler also writes the signal number to the wakeup fd. A thread
    reads it; if the kernel's SIGINT handler has not run a little later, the
    thread sends SIGINT to the main thread again, which ends the blocking
    call, a few times with growing pauses. Once the handler has run nothing
    more is sent, so an interrupt that was handled is not repeated; a
    handler that is not the kernel's (user code installed its own) gets no
    repeats either.
    """

    pauses = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)

    def __init__(self):
        self.handled = 0  # runs of the kernel's handler (main thread only)
        self._seen = 0    # self.handled when the last redelivery ended
        self._rfd = -1
        self._thread = None

    def start(self):
        """Takes the wakeup fd (main thread only, once: the kernel does at its
        start); does nothing if another part of the process already has it."""
        if threading.get_ident() != _MAIN_THREAD_ID or self._thread is not None:
            return
        try:
            rfd, wfd = os.pipe()
            os.set_blocking(wfd, False)
        except OSError:
            return  # no fds left: interrupts work as in the stock kernel
        try:
            previous = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        except (OSError, ValueError):
            previous = None
        if previous != -1:
            if previous is not None:
                signal.set_wakeup_fd(previous)
            os.close(rfd)
            os.close(wfd)
            return
        self._rfd = rfd
        self._thread = threading.Thread(target=self._run, name="kiln-sigint", daemon=True)
        self._thread.start()

    def handler(self, signum, frame):
        """The kernel's SIGINT handler while a request runs."""
        self.handled += 1
        signal.default_int_handler(signum, frame)

    def _run(self):
        while True:
            try:
                data = os.read(self._rfd, 256)
            except InterruptedError:
                continue
            except OSError:
                return
            if not data:
                return
            if _SIGINT in data:
                self._redeliver()
                self._drain()  # the bytes of our own repeats

    def _redeliver(self):
        for pause in self.pauses:
            time.sleep(pause)
            if self.handled != self._seen:
                break
            current = signal.getsignal(_SIGINT)
            if current != self.handler and current is not _record_sigint:
                break
            signal.pthread_kill(_MAIN_THREAD_ID, _SIGINT)
        self._seen = self.handled

    def _drain(self):
        os.set_blocking(self._rfd, False)
        try:
            while os.read(self._rfd, 256):
                pass
        except OSError:
            pass
        finally:
            os.set_blocking(self._rfd, True)


_sigint_redelivery = _SigintRedelivery()


# --------------------------------------------------------------------------
# IOPub: send in the calling thread
# --------------------------------------------------------------------------

class FastIOPubThread(IOPubThread):
    """IOPubThread whose send_multipart sends at once, in the caller's thread.

    The stock class queues every send for its own thread and wakes it through
    an inproc socket; the main thread then competes with it for the GIL
    (and, for flushes, waits for it). Sending directly under a lock keeps
    messages whole and in the order the senders produced them. In a forked
    child the stock path is kept (it pipes messages to the parent).
    """

    def __init__(self, socket, pipe=False):
        super().__init__(socket, pipe=pipe)
        self._send_lock = threading.Lock()
        _pub_threads.add(self)

    def close(self):
        # Not while another thread (the Flusher, a user thread) is sending:
        # a zmq socket must never be used by two threads at once.
        with self._send_lock:
            super().close()

    def send_multipart(self, *args, **kwargs):
        if not self._is_master_process():
            return super().send_multipart(*args, **kwargs)
        with _defer_sigint:
            with self._send_lock:
                if self.socket is not None:
                    # PUB sockets never block on send (they drop at the HWM).
                    _send_parts(self.socket, *args, **kwargs)
        return None


def _send_parts(sock, parts, flags=0, copy=True, track=False, **kwargs):
    """sock.send_multipart(parts) for the common case (copying send of a few
    byte strings) through pyzmq's compiled Socket.send: pyzmq 24's Python
    send_multipart spends ~10 us per message on flag enums and checks, the
    compiled calls ~2 us. Same frames, same flags; anything unusual goes the
    stock way."""
    if _csend is None or not copy or track or kwargs or flags or not isinstance(parts, list):
        return sock.send_multipart(parts, flags=flags, copy=copy, track=track, **kwargs)
    last = len(parts) - 1
    for i, part in enumerate(parts):
        _csend(sock, part, _SNDMORE if i < last else 0)
    return None


_SNDMORE = int(zmq.SNDMORE)


# --------------------------------------------------------------------------
# stdout / stderr
# --------------------------------------------------------------------------

class Flusher:
    """One thread that flushes streams whose first unflushed output is
    `flush_interval` (0.2 s) old: output of a long cell reaches the client
    while the cell runs, as with the stock kernel's IOLoop timer.

    It is woken only when a stream gets a deadline while none is pending, so
    a cell whose output is flushed at its end usually causes no thread switch.

    Anything with a `_flush()` method can be given a deadline (the history
    flag below uses it too).
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._due = {}  # object -> monotonic deadline
        self._thread = None

    def _after_fork(self):
        # In a forked child: the thread is gone and the lock may be held.
        self._cond = threading.Condition(threading.Lock())
        self._due = {}
        self._thread = None

    def request(self, stream, interval):
        with self._cond:
            if stream in self._due:
                return
            idle = not self._due
            self._due[stream] = time.monotonic() + interval
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kiln-flush", daemon=True)
                # Like the stock IOPub thread: invisible to debugpy.
                self._thread.pydev_do_not_trace = True
                self._thread.is_pydev_daemon_thread = True
                self._thread.start()
            elif idle:
                self._cond.notify()

    def _run(self):
        cond = self._cond
        with cond:
            while True:
                if not self._due:
                    cond.wait()
                    continue
                stream = min(self._due, key=self._due.__getitem__)
                wait = self._due[stream] - time.monotonic()
                if wait > 0:
                    cond.wait(wait)
                    continue
                del self._due[stream]
                cond.release()
                try:
                    stream._flush()
                except Exception:  # never let the flusher die
                    pass
                finally:
                    cond.acquire()


_flusher = Flusher()


class FastOutStream(OutStream):
    """OutStream that flushes synchronously in the calling thread.

    Stock flush() from the main thread schedules the send in the IOPub thread
    and blocks until that thread has run it; here the caller takes the buffer
    and sends it itself. That is at least as strong an ordering guarantee:
    when flush() returns the stream message is on the IOPub socket, before
    anything the caller sends next (display data, status idle, the reply).
    A per-stream lock around take+send keeps chunks in order when the
    Flusher thread and the main thread flush at the same time.

    Output written to the file descriptor (fd 1 / fd 2: subprocesses,
    os.system, C libraries) goes through a pipe that a watcher thread reads,
    as in the stock class. Stock only got such output into a cell before its
    end because its flush waited for other threads; a flush that does not
    wait would let `subprocess.run(["echo", "hi"])` at the end of a cell show
    up after the cell (measured: 10 of 50 cells under load). So flush() in
    the kernel process first moves whatever the pipe holds at that moment
    into the stream itself (under the watcher's lock, so chunks keep their
    order). Output that a finished child wrote is thus always part of its
    cell (stock: usually). The watcher also decodes with an incremental
    UTF-8 decoder (stock decodes each 1000-byte read on its own, and a
    character split across two reads, or bytes that are not UTF-8, kill its
    thread, after which fd output is lost and writers block once the pipe is
    full).
    """

    def __init__(self, *args, **kwargs):
        self._flush_lock = threading.RLock()
        self._pipe_lock = threading.Lock()
        self._pipe_decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._fid = None
        super().__init__(*args, **kwargs)
        if self._fid is not None:
            os.set_blocking(self._fid, False)
        _streams.add(self)

    def _schedule_flush(self):
        # Called by write() in the parent process: arm the 0.2 s deadline.
        if self._flush_pending:
            return
        self._flush_pending = True
        _flusher.request(self, self.flush_interval)

    def flush(self):
        if self.pub_thread is None or not self._is_master_process():
            # Closed, or a forked child: the stock code handles both.
            return super().flush()
        if self._fid is not None and self._should_watch:
            with _defer_sigint:
                with self._pipe_lock:
                    self._take_pipe(_pipe_pending(self._fid))
        self._flush()

    def _flush(self):
        with _defer_sigint:
            with self._flush_lock:
                super()._flush()

    def _flush_buffer(self):
        # Skip allocating a new StringIO when there is nothing to send (every
        # cell flushes both streams several times, usually with no output).
        with self._buffer_lock:
            if self._buffer.tell() == 0:
                return ""
        return super()._flush_buffer()

    def _watch_pipe_fd(self):
        # The watcher thread (started by the stock constructor).
        fid = self._fid
        try:
            os.set_blocking(fid, False)
            poller = select.poll()
            poller.register(fid, select.POLLIN)
            while self._should_watch:
                poller.poll()
                with self._pipe_lock:
                    # One read per turn: a flood from a child cannot keep a
                    # flush in the main thread waiting for the lock.
                    if not self._take_pipe(65536):
                        break
        except Exception:
            self._exc = sys.exc_info()

    def _take_pipe(self, limit):
        """Reads up to `limit` bytes that the pipe holds now into the stream
        and echoes them to the original descriptor (as stock does). False at
        end of file. REQUIRES: _pipe_lock held."""
        while limit > 0:
            try:
                data = os.read(self._fid, min(limit, 65536))
            except BlockingIOError:
                return True
            if not data:
                text = self._pipe_decoder.decode(b"", True)
                if text:
                    self.write(text)
                return False
            limit -= len(data)
            text = self._pipe_decoder.decode(data)
            if text:
                self.write(text)
            try:
                os.write(self._original_stdstream_copy, data)
            except OSError:  # the kernel's own stdout is gone: keep forwarding
                pass
        return True


def _pipe_pending(fd):
    """Bytes waiting in the pipe `fd` (FIONREAD)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


# --------------------------------------------------------------------------
# fork
# --------------------------------------------------------------------------

_streams = weakref.WeakSet()
_pub_threads = weakref.WeakSet()


def _after_fork_in_child():
    """A forked child (multiprocessing) inherits our locks in whatever state
    another thread of the kernel held them at the fork: the Flusher may have
    been sending a stream's output. The child sends through the stock path
    (a pipe to the parent) but still takes the stream locks, so it gets new,
    free ones; likewise the Flusher and the SIGINT deferral start afresh."""
    for stream in list(_streams):
        stream._flush_lock = threading.RLock()
        stream._pipe_lock = threading.Lock()
        stream._buffer_lock = threading.RLock()
    for pub in list(_pub_threads):
        pub._send_lock = threading.Lock()
    _flusher._after_fork()
    _DeferSigint._depth = 0
    _DeferSigint._prev = None
    _DeferSigint._pending = None
    # The wakeup pipe is the parent's: a SIGINT to this child must not make
    # the parent's thread think that its own main thread missed one.
    try:
        signal.set_wakeup_fd(-1)
    except ValueError:
        pass


os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------
# Tracebacks
# --------------------------------------------------------------------------

def _drop_sigint_handler_frame(tb):
    """Cuts _SigintRedelivery.handler's frame off the end of a traceback: the
    stock handler (signal.default_int_handler) is a C function and adds no
    frame, so a user's KeyboardInterrupt ends in the user's code."""
    if not isinstance(tb, types.TracebackType):
        return
    prev = None
    while tb.tb_next is not None:
        prev, tb = tb, tb.tb_next
    if prev is not None and tb.tb_frame.f_code is _SigintRedelivery.handler.__code__:
        prev.tb_next = None


def _patch_traceback_formatting(shell):
    """Two changes to the tracebacks the shell shows:

    * the SIGINT handler's frame is dropped (_drop_sigint_handler_frame);
    * when IPython's formatter fails, the standard library formats instead
      (the user's frames: the shell's are skipped as IPython skips them).
      Stock IPython prints "Unexpected exception formatting exception" and
      the formatter's own traceback then, and sends no error message: the
      client learns only the exception's name, from the reply. It happens to
      interrupts: CPython 3.11 gives a KeyboardInterrupt raised right after a
      call returns line 0, and stack_data rejects that frame.
    """
    itb = shell.InteractiveTB
    formatted = itb.structured_traceback

    def structured_traceback(etype=None, value=None, tb=None, tb_offset=None, *args, **kwargs):
        _drop_sigint_handler_frame(tb if etype is not None else sys.exc_info()[2])
        try:
            return formatted(etype, value, tb, tb_offset, *args, **kwargs)
        except Exception:
            if etype is None:
                etype, value, tb = sys.exc_info()
            if isinstance(tb, tuple):
                tb = tb[0]
            skip = itb.tb_offset if tb_offset is None else tb_offset
            while skip > 0 and tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
                skip -= 1
            text = "".join(traceback.format_exception(etype, value, tb))
            return text.rstrip("\n").split("\n")

    itb.structured_traceback = structured_traceback


# --------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------

class _HistoryFlag(threading.Event):
    """Replacement for HistoryManager.save_flag that delays the wake-up of
    IPython's history-saving thread by up to 50 ms.

    Stock IPython sets the flag twice per cell (store_inputs before running
    the code, store_output after it); the woken thread runs Python code and
    a sqlite commit with fsync (~0.9 ms on this disk) and takes the GIL and
    a CPU away from the main thread in the middle of the cell (measured:
    ~0.7 ms of print(1)'s latency, more for back-to-back cells). Here a
    set() from the main thread during a request only marks the flag; the
    Flusher thread really sets it 50 ms later. The same rows are written, in
    the same order, by the same thread; cells that follow each other within
    50 ms share one commit. Reading history in the kernel (%history, search)
    writes the cache out first, as before; at exit IPython writes out what is
    left. Only a kernel killed within 50 ms of a cell can lose that cell's
    history row (stock: within the ~1 ms the thread needs).
    """

    def __init__(self):
        super().__init__()
        self.deferring = False
        self.deferred = False

    def set(self):
        if self.deferring and threading.get_ident() == _MAIN_THREAD_ID:
            if not self.deferred:
                self.deferred = True
                _flusher.request(self, 0.05)
            return
        super().set()

    def _flush(self):
        # From the Flusher thread, when the deadline has come.
        if self.deferred:
            self.deferred = False
            super().set()


def _install_history_flag(history_manager):
    """Swaps in a _HistoryFlag; returns it, or None if history is not saved."""
    thread = getattr(history_manager, "save_thread", None)
    if thread is None or not thread.is_alive():
        return None
    old = history_manager.save_flag
    flag = _HistoryFlag()
    history_manager.save_flag = flag
    # The saving thread may be waiting on the old flag: wake it once; it then
    # writes out an empty cache and waits on the new flag.
    old.set()
    return flag


# --------------------------------------------------------------------------
# Cell preparation done twice
# --------------------------------------------------------------------------

class _ReusePreparation:
    """Lets the second transform_cell/should_run_async of a cell reuse the
    first result.

    For a cell that is not async, IPythonKernel.do_execute calls
    shell.transform_cell(code) and shell.should_run_async(code, ...) and then
    shell.run_cell(code), which calls both again on the very same string
    (identity) before any user code ran, so the results cannot differ; the
    second round costs ~0.1 ms (tokenizing, prefiltering, two compile()s).

    While armed for `code`, each of the two functions stores its first
    successful result for that exact object and hands it out once, to the
    next call with that same object; any other call, and any call after that,
    runs the real function. Failures are never stored (the caller sees the
    real exception every time).
    """

    def __init__(self, shell):
        self._shell = shell
        self._code = None
        self._transformed = self._should = _MISSING
        cls = type(shell)
        self._transform_cell = cls.transform_cell.__get__(shell)
        self._should_run_async = cls.should_run_async.__get__(shell)
        shell.transform_cell = self.transform_cell
        shell.should_run_async = self.should_run_async

    def arm(self, code):
        self._code = code
        self._transformed = self._should = _MISSING

    def disarm(self):
        self._code = None
        self._transformed = self._should = _MISSING

    def transform_cell(self, raw_cell):
        if self._code is not None and raw_cell is self._code:
            if self._transformed is _MISSING:
                self._transformed = result = self._transform_cell(raw_cell)
                return result
            result, self._transformed = self._transformed, _MISSING
            return result
        return self._transform_cell(raw_cell)

    def should_run_async(self, raw_cell, *, transformed_cell=None, preprocessing_exc_tuple=None):
        if (self._code is not None and raw_cell is self._code and preprocessing_exc_tuple is None
                and transformed_cell is not None):
            if self._should is _MISSING:
                result = self._should_run_async(raw_cell, transformed_cell=transformed_cell,
                                                preprocessing_exc_tuple=None)
                if result:
                    # An async cell runs without asking again: nothing to reuse.
                    self.disarm()
                else:
                    self._should = (transformed_cell, result)
                return result
            stored_for, result = self._should
            # Both answers have been handed out; user code runs next.
            self.disarm()
            if stored_for is transformed_cell:
                return result
        return self._should_run_async(raw_cell, transformed_cell=transformed_cell,
                                      preprocessing_exc_tuple=preprocessing_exc_tuple)


_MISSING = object()


# --------------------------------------------------------------------------
# Kernel
# --------------------------------------------------------------------------

_signature_cache = {}
_stock_accepts_cell_id = _kernelbase._accepts_cell_id


def _accepts_cell_id(meth):
    """Cached `_accepts_cell_id` (stock calls inspect.signature per cell)."""
    key = getattr(meth, "__func__", meth)
    try:
        return _signature_cache[key]
    except KeyError:
        result = _stock_accepts_cell_id(meth)
        _signature_cache[key] = result
        return result
    except TypeError:  # unhashable callable
        return _stock_accepts_cell_id(meth)


class FastKernel(IPythonKernel):
    # The stock kernel sleeps 0.5 ms after flushing stdout/stderr "to prevent
    # output synchronization problems". Our flush has already put the output
    # on the IOPub socket when it returns, so there is nothing to wait for.
    _execute_sleep = Float(0.0).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._history_flag = None
        self._reuse = None
        if self.shell is not None:
            self._history_flag = _install_history_flag(self.shell.history_manager)
            self._reuse = _ReusePreparation(self.shell)
            _patch_traceback_formatting(self.shell)
        _sigint_redelivery.start()

    async def do_execute(self, code, silent, store_history=True, user_expressions=None,
                         allow_stdin=False, *, cell_id=None):
        reuse = self._reuse
        if reuse is None:
            return await super().do_execute(code, silent, store_history, user_expressions,
                                            allow_stdin, cell_id=cell_id)
        reuse.arm(code)
        try:
            return await super().do_execute(code, silent, store_history, user_expressions,
                                            allow_stdin, cell_id=cell_id)
        finally:
            reuse.disarm()

    async def dispatch_shell(self, msg):
        flag = self._history_flag
        if flag is None:
            return await super().dispatch_shell(msg)
        flag.deferring = True
        try:
            return await super().dispatch_shell(msg)
        finally:
            flag.deferring = False

    def pre_handler_hook(self):
        # Stock installs signal.default_int_handler; ours raises the same
        # KeyboardInterrupt and lets _SigintRedelivery see that it ran.
        self.saved_sigint_handler = signal.signal(signal.SIGINT, _sigint_redelivery.handler)

    async def _flush_control_queue(self):
        # Stock 6.17 schedules a flush in the control thread and returns a
        # future that dispatch_shell never awaits (it awaits this coroutine,
        # whose result is the future), so no shell message ever waited for
        # control messages; the only effect was waking the control thread.
        # Control messages are still handled by the control thread as they
        # arrive.
        return None


class FastKernelApp(IPKernelApp):
    name = "kiln-ipykernel"
    kernel_class = Type(FastKernel, klass=_kernelbase.Kernel).tag(config=True)
    outstream_class = "kiln_ipykernel.FastOutStream"

    def init_iopub(self, context):
        self.iopub_socket = context.socket(zmq.PUB)
        self.iopub_socket.linger = 1000
        self.iopub_port = self._bind_socket(self.iopub_socket, self.iopub_port)
        self.log.debug("iopub PUB Channel on port: %i" % self.iopub_port)
        self.configure_tornado_logger()
        self.iopub_thread = FastIOPubThread(self.iopub_socket, pipe=True)
        self.iopub_thread.start()
        self.iopub_socket = self.iopub_thread.background_socket


def main(argv=None):
    _kernelbase._accepts_cell_id = _accepts_cell_id
    _ipkernel._accepts_cell_id = _accepts_cell_id
    FastKernelApp.launch_instance(argv)
