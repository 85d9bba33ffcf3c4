/** The routes for people and monitors: the live sale page (GET /), its feed (GET /events) and Prometheus (GET /metrics). */
import { Elysia } from "elysia"
import type { Config } from "../config"
import { contentType, type Metrics } from "../metrics"
import type { Engine } from "../sale/engine"
import livePage from "./live.html" with { type: "text" }
import { liveFeed } from "./live"
import { fail } from "./respond"
import type { Admission } from "./ratelimit"
import { scrapeGauges } from "./scrape"
import { sampler } from "./status"

export type OperabilityDeps = {
  engine: Engine
  config: Pick<Config, "saleItems" | "salePeriodSeconds">
  metrics: Metrics
  admission: Admission
  /** performance.now() at the request's arrival (set by app.ts's onRequest hook). */
  startedAt: (request: Request) => number | undefined
}

/** The page as text (Bun's types describe an .html import as a bundle; `type: "text"` makes it the file's text). */
const page = livePage as unknown as string
const pageHeaders = { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache", "content-security-policy": "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:" }

export function operability({ engine, config, metrics, admission, startedAt }: OperabilityDeps) {
  const engineSample = sampler(engine)
  const feed = liveFeed({ sample: () => engineSample.sample(500), config, metrics, engine: engine.name })
  const plugin = new Elysia({ name: "operability" })
    .get(
      "/",
      ({ request }) => {
        metrics.request("page", "ok", startedAt(request))
        return new Response(page, { headers: pageHeaders })
      },
      { detail: { hide: true } },
    )
    // Bun would answer HEAD with the GET route: a stream that never ends and a watcher never released.
    .head("/events", () => fail("method_not_allowed", "/events accepts GET.", { allow: "GET" }), { detail: { hide: true } })
    .get(
      "/events",
      () => {
        metrics.request("events", "ok")
        return feed.subscribe()
      },
      {
        detail: {
          summary: "The live page's feed (server-sent events)",
          description:
            "A `text/event-stream`: on connect and then once a second, one `data:` line of JSON with every /status field, plus `checkouts_per_second` and `purchases_per_second` (all instances), `outcomes` (this instance's answers by outcome over the last `outcomes_window_seconds`), `engine`, `health`, `backlog_entries`, `backlog_age_seconds` and `now` (Unix ms). When the engine cannot tell the status, the /status fields are absent and `error` says why.",
          responses: { 200: { description: "The stream.", content: { "text/event-stream": { schema: { type: "string" } } } } } as never,
        },
      },
    )
    .get(
      "/metrics",
      async ({ request }) => {
        const sample = await engineSample.sample()
        const body = metrics.render(scrapeGauges(sample, config, { engine: engine.name, watchers: feed.watchers, rateLimitEntries: admission.entries() }))
        metrics.request("metrics", "ok", startedAt(request))
        return new Response(body, { headers: { "content-type": contentType } })
      },
      {
        detail: {
          summary: "Prometheus metrics of this process",
          description: "Text exposition format 0.0.4: requests by endpoint and outcome, request-duration histograms, script batch sizes, durable-store commits and backlog, rebuilds, the current sale's items, and process metrics. Each instance serves its own; Prometheus labels them by `instance`.",
          responses: { 200: { description: "The metrics.", content: { "text/plain; version=0.0.4": { schema: { type: "string" } } } } } as never,
        },
      },
    )
  return { plugin, feed }
}
