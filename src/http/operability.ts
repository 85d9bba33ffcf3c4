/** The routes for people and monitors: the live sale page (GET /), its feed (GET /events) and Prometheus (GET /metrics). */
import { contentType, type Metrics } from "../metrics"
import type { Engine } from "../sale/engine"
import livePage from "./live.html" with { type: "text" }
import { liveFeed } from "./live"
import type { Admission } from "./ratelimit"
import { processGauges, scrapeGauges } from "./scrape"
import { sampler } from "./status"

export type OperabilityDeps = {
  engine: Engine
  metrics: Metrics
  admission: Admission
  /** performance.now() at the request's arrival (set by app.ts's onRequest hook). */
  startedAt: (request: Request) => number | undefined
  /** WORKERS > 1: adds the other workers' series to this one's (src/worker.ts). */
  gather?: (own: string) => Promise<string>
}

/** Each recent audit's count of differences; none while the engine is starting (its operator answers nothing yet). */
function auditsOf(engine: Engine): [number, number][] {
  const status = engine.operator.auditStatus() as ReturnType<Engine["operator"]["auditStatus"]> | Promise<unknown>
  if (status instanceof Promise) {
    status.catch(() => {})
    return []
  }
  return status.counts
}

/** What the live page shows beside the sale: the next sale, and the latest operator actions (every instance's, from the store). */
async function pageExtras(engine: Engine): Promise<Record<string, unknown>> {
  const [next, actions] = await Promise.all([engine.operator.nextSale(), engine.operator.actions({ limit: 5 }).catch(() => [])])
  return {
    next_sale: next ? { id: next.id, name: next.name, starts_at: new Date(next.startsAt).toISOString() } : null,
    actions: actions.map((a) => ({ at: new Date(a.at).toISOString(), action: a.action, sale_id: a.saleId })),
  }
}

/** The page as text (Bun's types describe an .html import as a bundle; `type: "text"` makes it the file's text). */
const page = livePage as unknown as string
const pageHeaders = { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache", "content-security-policy": "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:" }

export function operability({ engine, metrics, admission, startedAt, gather = async (own) => own }: OperabilityDeps) {
  const engineSample = sampler(engine)
  const feed = liveFeed({ sample: () => engineSample.sample(500), extras: () => pageExtras(engine), metrics, engine: engine.name })
  const processExtras = () => ({ watchers: feed.watchers, rateLimitEntries: admission.entries() })
  return {
    feed,
    /** This process's series without the engine's gauges, which the worker scraped reads for every worker (src/worker.ts). */
    workerSeries: () => metrics.render(processGauges(processExtras())),
    /** GET /: the live page. */
    page(request: Request): Response {
      metrics.request("page", "ok", startedAt(request))
      return new Response(page, { headers: pageHeaders })
    },
    /** GET /events: the live page's feed. */
    events(): Response {
      metrics.request("events", "ok")
      return feed.subscribe()
    },
    /** GET /metrics: this process's series with the engine's gauges read now; with WORKERS, every worker's. */
    async metrics(request: Request): Promise<Response> {
      const sample = await engineSample.sample()
      const body = await gather(metrics.render(scrapeGauges(sample, { engine: engine.name, ...processExtras(), audits: auditsOf(engine) })))
      metrics.request("metrics", "ok", startedAt(request))
      return new Response(body, { headers: { "content-type": contentType } })
    },
  }
}
