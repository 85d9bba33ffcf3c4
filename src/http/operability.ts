/** The routes for monitors: Prometheus (GET /metrics). */
import { Elysia } from "elysia"
import type { Config } from "../config"
import { contentType, type Metrics } from "../metrics"
import type { Engine } from "../sale/engine"
import type { Admission } from "./ratelimit"
import { scrapeGauges } from "./scrape"
import { sampler } from "./status"

export type OperabilityDeps = {
  engine: Engine
  config: Pick<Config, "saleItems" | "salePeriodSeconds">
  metrics: Metrics
  admission: Admission
  /** performance.now() at the request's arrival (set by app.ts's onRequest hook). */
  startedAt: (context: object) => number | undefined
}

export function operability({ engine, config, metrics, admission, startedAt }: OperabilityDeps) {
  const engineSample = sampler(engine)
  const plugin = new Elysia({ name: "operability" })
    .get(
      "/metrics",
      async (c) => {
        const sample = await engineSample.sample()
        const body = metrics.render(scrapeGauges(sample, config, { engine: engine.name, rateLimitEntries: admission.entries() }))
        metrics.request("metrics", "ok", startedAt(c))
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
  return { plugin }
}
