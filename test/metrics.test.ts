/** GET /metrics: Prometheus text exposition of this process's answers, the engine's work, the sale and the process. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createEmbeddedEngine } from "../src/embedded/engine"
import { generatedCatalog } from "../src/sale/catalog"
import { openStore } from "../src/embedded/sqlite"
import { codeToStatus } from "../src/errors"
import { createMetrics, outcomeNames, type Metrics } from "../src/metrics"
import { engines, harness, type Harness } from "./support/harness"
import { until } from "./support/services"

type Exposition = { text: string; value(name: string, labels?: Record<string, string>): number | undefined; families: Map<string, { type: string; help: string }> }

/** Parses the text format strictly: every sample belongs to a family announced by HELP and TYPE before it. */
function parse(text: string): Exposition {
  const families = new Map<string, { type: string; help: string }>()
  const samples = new Map<string, number>()
  const helps = new Map<string, string>()
  for (const line of text.trimEnd().split("\n")) {
    let m: RegExpExecArray | null
    if ((m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line))) helps.set(m[1]!, m[2]!)
    else if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line))) {
      expect(helps.has(m[1]!)).toBe(true)
      expect(families.has(m[1]!)).toBe(false)
      families.set(m[1]!, { type: m[2]!, help: helps.get(m[1]!)! })
    } else {
      m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/.exec(line)
      if (!m) throw new Error(`not a sample line: ${line}`)
      const family = [...families.keys()].find((f) => m![1] === f || (families.get(f)!.type === "histogram" && [`${f}_bucket`, `${f}_sum`, `${f}_count`].includes(m![1]!)))
      if (!family) throw new Error(`sample before its HELP and TYPE: ${line}`)
      samples.set(`${m[1]}${m[2] ?? ""}`, Number(m[3]))
    }
  }
  const key = (name: string, labels: Record<string, string> = {}) => `${name}${Object.keys(labels).length ? `{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(",")}}` : ""}`
  return { text, families, value: (name, labels) => samples.get(key(name, labels)) }
}

for (const engine of engines) describe(`${engine} engine`, () => {
  let h: Harness
  let metrics: Metrics
  beforeAll(async () => {
    metrics = createMetrics()
    h = await harness({ saleItems: 10, userLimit: 2 }, engine, { metrics, limits: { rateLimitPerUser: 1, rateLimitBurstSeconds: 3 } })
  })
  afterAll(() => h.close())

  const scrape = async () => {
    const response = await h.app.handle(new Request("http://localhost/metrics"))
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
    return parse(await response.text())
  }

  test("counts every answer by endpoint and outcome, with a duration histogram per endpoint", async () => {
    const held = await h.checkout("ann", 1)
    await h.checkout("ann", 1) // repeated
    await h.checkout("bob", 1) // item_reserved
    await h.checkout("bob", 11) // unknown_item
    await h.checkout("bob", 2)
    await h.checkout("bob", 3) // rate_limited: bob's fourth request within his burst of three
    await h.call("POST", "/checkout?user_id=cat&id=abc") // invalid_request (validation)
    await h.call("POST", "/checkout?user_id=cat&id=1&id=2") // invalid_request (repeated parameter)
    await h.purchase(held.body.code)
    await h.purchase(held.body.code) // code_used
    await h.purchase(`${held.body.sale_id}.AAAAAAAAAAAAAAAAAAAAAA`) // code_not_found
    await h.call("GET", "/status")
    await h.call("GET", "/health")
    await h.call("GET", "/nope")
    await h.call("DELETE", "/status")
    const m = await scrape()
    const requests = (endpoint: string, outcome: string) => m.value("flashsale_requests_total", { endpoint, outcome })
    expect(Object.fromEntries(["reserved", "repeated", "item_reserved", "unknown_item", "rate_limited", "invalid_request", "sold_out", "user_limit", "unavailable"].map((o) => [o, requests("checkout", o)]))).toEqual({
      reserved: 2, repeated: 1, item_reserved: 1, unknown_item: 1, rate_limited: 1, invalid_request: 2, sold_out: 0, user_limit: 0, unavailable: 0,
    })
    expect([requests("purchase", "purchased"), requests("purchase", "code_used"), requests("purchase", "code_not_found")]).toEqual([1, 1, 1])
    expect([requests("status", "ok"), requests("health", "ok"), requests("other", "not_found"), requests("status", "method_not_allowed")]).toEqual([1, 1, 1, 1])
    expect(m.value("flashsale_rate_limited_total", { by: "user" })).toBe(1)

    expect(m.families.get("flashsale_request_duration_seconds")?.type).toBe("histogram")
    expect(m.value("flashsale_request_duration_seconds_count", { endpoint: "checkout" })).toBe(8)
    expect(m.value("flashsale_request_duration_seconds_bucket", { endpoint: "checkout", le: "+Inf" })).toBe(8)
    const buckets = [...m.text.matchAll(/^flashsale_request_duration_seconds_bucket\{endpoint="checkout",le="[^"]+"\} (\d+)$/gm)].map((b) => Number(b[1]))
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b))
    expect(m.value("flashsale_request_duration_seconds_sum", { endpoint: "checkout" })).toBeGreaterThan(0)
  })

  test("reports the current sale as /status does, the store's backlog and the engine's health", async () => {
    await h.drained()
    const status = (await h.call("GET", "/status")).body
    const m = await scrape()
    expect(m.value("flashsale_sale_id")).toBe(status.sale_id)
    for (const state of ["sold", "reserved", "available"]) expect(m.value("flashsale_sale_items", { state })).toBe(status[`items_${state}`])
    expect(m.value("flashsale_sale_decisions", { decision: "checkout", result: "accepted" })).toBe(status.checkouts.accepted)
    expect(m.value("flashsale_store_backlog_entries")).toBe(0)
    expect(m.value("flashsale_store_backlog_age_seconds")).toBe(0)
    expect(m.value("flashsale_health_status", { status: "ok" })).toBe(1)
    expect(m.value("flashsale_info", { engine, version: expect.any(String) as never }) ?? m.text.match(new RegExp(`flashsale_info\\{engine="${engine}",version="[^"]+"\\} 1`))).toBeTruthy()
    for (const name of ["flashsale_batch_size", "flashsale_store_commit_seconds", "flashsale_rebuilds_total", "process_resident_memory_bytes", "process_cpu_seconds_total", "flashsale_event_loop_lag_seconds"]) expect(m.families.has(name)).toBe(true)
    expect(m.value("process_resident_memory_bytes")).toBeGreaterThan(0)
  })

  test("names follow Prometheus conventions: flashsale_ or process_ prefix, counters end in _total, base units", async () => {
    const m = await scrape()
    for (const [name, { type }] of m.families) {
      expect(name).toMatch(/^(flashsale|process)_[a-z_]+$/)
      if (type === "counter") expect(name).toMatch(/_total$/)
      else expect(name).not.toMatch(/_total$/)
      expect(name).not.toMatch(/_(ms|milliseconds|kb|mb)(_|$)/)
    }
  })
})

describe("embedded engine work", () => {
  test("each SQLite commit is timed and sized, and a sale read back from the file counts as a rebuild", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-metrics-"))
    const path = join(dir, "flashsale.sqlite")
    const config = { saleItems: 10, userLimit: 3, salePeriodSeconds: 3600, holdSeconds: 60, saleSchedule: "recurring" as const }
    const now = () => 1_900_000_000_000
    try {
      const first = createMetrics()
      const engine = createEmbeddedEngine({ store: openStore(path), config, catalog: generatedCatalog, now, metrics: first, log: () => {} })
      await Promise.all([engine.checkout("ann", 1), engine.checkout("bob", 2), engine.checkout("cat", 3)])
      await engine.checkout("dan", 4)
      engine.close()
      const m = parse(first.render())
      expect(m.value("flashsale_store_commit_rows_sum")).toBe(4)
      expect(m.value("flashsale_store_commit_seconds_count")).toBe(m.value("flashsale_store_commit_rows_count")!)
      expect(m.value("flashsale_store_commit_seconds_count")).toBeLessThan(4) // the first three went in one transaction
      expect(m.value("flashsale_rebuilds_total")).toBe(0)

      const second = createMetrics()
      const again = createEmbeddedEngine({ store: openStore(path), config, catalog: generatedCatalog, now, metrics: second, log: () => {} })
      expect((await again.status()).itemsReserved).toBe(4)
      again.close()
      expect(parse(second.render()).value("flashsale_rebuilds_total")).toBe(1)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

test("the Grafana dashboard in docs/ is built only on series that /metrics serves", async () => {
  const dashboard = JSON.parse(await Bun.file(join(import.meta.dir, "..", "docs", "grafana-dashboard.json")).text())
  const exprs: string[] = dashboard.panels.flatMap((p: { targets?: { expr: string }[] }) => (p.targets ?? []).map((t) => t.expr))
  expect(exprs.length).toBeGreaterThan(10)
  const metrics = createMetrics()
  const h = await harness({}, "embedded", { metrics })
  try {
    const served = parse(await (await h.app.handle(new Request("http://localhost/metrics"))).text()).families
    for (const name of new Set(exprs.flatMap((e) => e.match(/\b(flashsale|process)_[a-z_]+/g) ?? []))) {
      expect({ name, served: served.has(name.replace(/_(bucket|sum|count)$/, "")) }).toEqual({ name, served: true })
    }
  } finally {
    await h.close()
  }
})

test("every error code can be an outcome label", () => {
  for (const code of Object.keys(codeToStatus)) expect(outcomeNames).toContain(code as never)
})

test("the event-loop lag is sampled once started", async () => {
  const metrics = createMetrics()
  metrics.startSampling()
  try {
    await until("a lag sample", () => (parse(metrics.render()).value("flashsale_event_loop_lag_seconds_count") ?? 0) > 0)
  } finally {
    metrics.stopSampling()
  }
})
