// Waiting without fixed sleeps, shared by every e2e suite.

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

// Polls fn() until it returns a truthy value (returned) or the deadline passes (throws, naming
// what was awaited and the last value seen).
export async function waitFor(fn, { timeoutMs = 10_000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    last = await fn()
    if (last) return last
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`)
    }
    await sleep(intervalMs)
  }
}
