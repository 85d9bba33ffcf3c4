/**
 * The live page's feed: server-sent events at GET /events. While anyone watches, one timer takes one sample of
 * the engine per second (sampler: one status() and one health() call, whatever the number of watchers) and
 * pushes the same encoded message to every watcher. Polling would cost a request, and an engine call, per
 * watcher per second; this costs one engine call per second and one write per watcher.
 */
import type { Metrics } from "../metrics"
import { backlogOf } from "./scrape"
import { statusBody, type Sample } from "./status"

type Watcher = ReadableStreamDefaultController<Uint8Array>

/** A watcher this many messages behind is dropped (its browser reconnects by itself). */
const maxQueued = 30
/** Outcome shares are over this many seconds of this process's answers. */
const windowSeconds = 60

export type LiveFeedOptions = {
  sample: () => Promise<Sample>
  /** More for the page, read with each sample (the next sale, the latest operator actions); never fails the tick. */
  extras?: () => Promise<Record<string, unknown>>
  metrics: Pick<Metrics, "answers">
  engine: string
  intervalMs?: number
}

export function liveFeed({ sample, extras = async () => ({}), metrics, engine, intervalMs = 1000 }: LiveFeedOptions) {
  const watchers = new Set<Watcher>()
  const encoder = new TextEncoder()
  let timer: ReturnType<typeof setInterval> | undefined
  let ticking = false
  let latest: Uint8Array | undefined
  let previous: { sale: number | null; at: number; checkouts: number; purchases: number } | undefined
  /** This process's answers by outcome, one entry per tick, for the last minute. */
  const history: Record<string, number>[] = []

  function answers(): Record<string, number> {
    const all: Record<string, number> = {}
    for (const endpoint of ["checkout", "purchase"] as const) for (const [o, n] of Object.entries(metrics.answers(endpoint))) all[o] = (all[o] ?? 0) + n
    return all
  }

  function snapshot(s: Sample): Record<string, unknown> {
    const now = answers()
    history.push(now)
    if (history.length > windowSeconds + 1) history.shift()
    const then = history[0]!
    const outcomes: Record<string, number> = {}
    for (const [o, n] of Object.entries(now)) if (n - (then[o] ?? 0) > 0) outcomes[o] = n - (then[o] ?? 0)
    const backlog = backlogOf(s.health.checks)
    const base = { now: s.at, engine, health: s.health.status, backlog_entries: backlog.entries, backlog_age_seconds: backlog.ageSeconds, outcomes, outcomes_window_seconds: Math.min(windowSeconds, history.length - 1) }
    if (!s.status) return { ...base, error: s.statusError }
    const body = statusBody(s.status)
    const checkouts = body.checkouts.accepted + body.checkouts.rejected
    const purchases = body.purchases.accepted + body.purchases.rejected
    const seconds = previous && previous.sale === body.sale_id ? (s.at - previous.at) / 1000 : 0
    const rate = (n: number, before: number) => (seconds > 0 ? Math.max(0, Math.round(((n - before) / seconds) * 10) / 10) : 0)
    const result = { ...base, ...body, checkouts_per_second: rate(checkouts, previous?.checkouts ?? 0), purchases_per_second: rate(purchases, previous?.purchases ?? 0) }
    previous = { sale: body.sale_id, at: s.at, checkouts, purchases }
    return result
  }

  function send(watcher: Watcher, message: Uint8Array): void {
    try {
      if ((watcher.desiredSize ?? 0) < -maxQueued) {
        watchers.delete(watcher)
        watcher.close()
      } else watcher.enqueue(message)
    } catch {
      watchers.delete(watcher) // closed by the client
    }
  }

  async function tick(): Promise<void> {
    if (ticking) return // the engine is slow to answer: skip rather than pile up
    ticking = true
    try {
      const [taken, more] = await Promise.all([sample(), extras().catch(() => ({}))])
      const message = encoder.encode(`data: ${JSON.stringify({ ...snapshot(taken), ...more })}\n\n`)
      latest = message
      for (const watcher of watchers) send(watcher, message)
    } finally {
      ticking = false
    }
  }

  function stopIfIdle(): void {
    if (watchers.size > 0 || !timer) return
    clearInterval(timer)
    timer = undefined
    history.length = 0
    latest = undefined
    previous = undefined
  }

  return {
    /** A new watcher's stream: the latest message at once (or the first sample), then one per second. */
    subscribe(): Response {
      let self: Watcher
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          self = controller
          watchers.add(controller)
          controller.enqueue(encoder.encode("retry: 2000\n\n"))
          if (latest) controller.enqueue(latest)
          else void tick()
          timer ??= setInterval(() => void tick(), intervalMs)
        },
        cancel() {
          watchers.delete(self)
          stopIfIdle()
        },
      })
      return new Response(body, { headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" } })
    },
    get watchers() {
      return watchers.size
    },
    /** Ends every stream (a graceful stop waits for open responses) and the timer. */
    close(): void {
      for (const watcher of watchers) {
        try {
          watcher.close()
        } catch {}
      }
      watchers.clear()
      stopIfIdle()
    },
  }
}
