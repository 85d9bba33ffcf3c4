/** Requests sent to Redis in one script call at most; more wait for the next call. */
export const maxBatch = 256

/**
 * Requests wait here and are decided in one script call, each as if alone, in arrival order. One call
 * per queue is in flight at a time and what arrives meanwhile forms the next batch: batches grow with
 * load, round trips do not.
 */
export function batcher<Input, Output>(decideBatch: (inputs: Input[]) => Promise<Output[]>, onIdle = () => {}): (input: Input) => Promise<Output> {
  type Waiting = { input: Input; resolve: (output: Output) => void; reject: (error: unknown) => void }
  let waiting: Waiting[] = []
  let deciding = false
  async function flush(): Promise<void> {
    deciding = true
    const batch = waiting.slice(0, maxBatch)
    waiting = waiting.slice(maxBatch)
    try {
      const outputs = await decideBatch(batch.map((w) => w.input))
      batch.forEach((w, i) => w.resolve(outputs[i]!))
    } catch (error) {
      for (const w of batch) w.reject(error)
    } finally {
      deciding = false
      if (waiting.length > 0) flush()
      else onIdle()
    }
  }
  return (input) =>
    new Promise((resolve, reject) => {
      waiting.push({ input, resolve, reject })
      if (deciding) return
      // The first request after a pause waits for the rest of this event-loop turn, so that what
      // arrived together goes in one call rather than the first alone.
      deciding = true
      setImmediate(flush)
    })
}

/**
 * One batcher per key, made on first use and dropped once idle: the queues of what comes and goes (a sale's parts,
 * a sale's shards). A queue decides with the `decideBatch` it was made with, while it lives.
 */
export function batchersByKey<Input, Output>(): (key: string, decideBatch: (inputs: Input[]) => Promise<Output[]>) => (input: Input) => Promise<Output> {
  const queues = new Map<string, (input: Input) => Promise<Output>>()
  return (key, decideBatch) => {
    let queue = queues.get(key)
    if (!queue) queues.set(key, (queue = batcher(decideBatch, () => queues.delete(key))))
    return queue
  }
}
