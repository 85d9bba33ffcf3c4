/** The live page's feed (GET /events): one engine sample per tick for every watcher, the /status fields, a clean stop. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { liveFeed } from "../src/http/live"
import { sampler, type Sample } from "../src/http/status"
import { createMetrics } from "../src/metrics"
import type { Engine, SaleStatus } from "../src/sale/engine"
import { harness, serve, type Harness } from "./support/harness"
import { recurringSale } from "../src/sale/sales"
import { generatedCatalog } from "../src/sale/catalog"
import { startServer } from "./support/process"

const sale = recurringSale(7, { periodMs: 3_600_000, saleItems: 5, userLimit: 10, holdMs: 60_000, catalog: generatedCatalog })
const saleStatus = (sold: number): SaleStatus => ({ sale, state: "active", now: Date.now(), itemsTotal: 5, itemsSold: sold, itemsReserved: 0, checkouts: { accepted: sold, rejected: 0 }, purchases: { accepted: sold, rejected: 0 } })

/** Reads `n` data messages from an event stream, as parsed JSON. */
async function messages(body: ReadableStream<Uint8Array>, n: number): Promise<any[]> {
  const reader = body.getReader()
  const decoder = new TextDecoder()
  const found: any[] = []
  let buffer = ""
  while (found.length < n) {
    const { value, done } = await reader.read()
    if (done) break
    buffer += decoder.decode(value, { stream: true })
    let end: number
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = event.split("\n").find((l) => l.startsWith("data: "))
      if (data) found.push(JSON.parse(data.slice(6)))
    }
  }
  await reader.cancel()
  return found
}

describe("the feed", () => {
  test("every watcher gets the same messages, from one engine sample per tick however many watch", async () => {
    let samples = 0
    const sample = async (): Promise<Sample> => ({ at: Date.now(), status: saleStatus(++samples), statusError: undefined, health: { status: "ok", checks: {} } })
    const feed = liveFeed({ sample, metrics: createMetrics(), engine: "test", intervalMs: 40 })
    const watchers = Array.from({ length: 5 }, () => feed.subscribe())
    expect(watchers[0]!.headers.get("content-type")).toContain("text/event-stream")
    expect(feed.watchers).toBe(5)
    const seen = await Promise.all(watchers.map((w) => messages(w.body!, 4)))
    // Each message is one sample; five watchers reading four each took only about four samples, not twenty.
    expect(samples).toBeLessThanOrEqual(6)
    const last = seen.map((m) => m.at(-1).items_sold)
    expect(Math.max(...last) - Math.min(...last)).toBeLessThanOrEqual(1)
    expect(feed.watchers).toBe(0)
  })

  test("an engine that cannot tell the status still gets its health pushed, with the reason", async () => {
    const sample = async (): Promise<Sample> => ({ at: Date.now(), status: undefined, statusError: "Redis is unreachable", health: { status: "down", checks: {} } })
    const feed = liveFeed({ sample, metrics: createMetrics(), engine: "redis", intervalMs: 40 })
    const [first] = await messages(feed.subscribe().body!, 1)
    expect(first).toMatchObject({ health: "down", error: "Redis is unreachable", engine: "redis" })
    expect(first.items_sold).toBeUndefined()
    feed.close()
  })

  test("close() ends every open stream", async () => {
    const sample = async (): Promise<Sample> => ({ at: Date.now(), status: saleStatus(0), statusError: undefined, health: { status: "ok", checks: {} } })
    const feed = liveFeed({ sample, metrics: createMetrics(), engine: "test", intervalMs: 40 })
    const reader = feed.subscribe().body!.getReader()
    await reader.read()
    feed.close()
    for (;;) if ((await reader.read()).done) break
    expect(feed.watchers).toBe(0)
  })

  test("watchers and scrapers asking together share one look at the engine", async () => {
    let calls = 0
    const engine = { name: "test", status: async () => (calls++, saleStatus(0)), health: async () => ({ status: "ok" as const, checks: {} }) } as unknown as Engine
    const s = sampler(engine)
    await Promise.all(Array.from({ length: 10 }, () => s.sample(500)))
    await s.sample(500)
    expect(calls).toBe(1)
    await s.sample() // a scrape wants a fresh look
    expect(calls).toBe(2)
  })
})

describe("GET /events", () => {
  let h: Harness
  let server: ReturnType<typeof serve>
  beforeAll(async () => {
    h = await harness({ saleItems: 10 }, "embedded")
    server = serve(h)
  })
  afterAll(async () => {
    await server.stop()
    await h.close()
  })

  test("streams every /status field, the rates, the outcomes and the engine's health", async () => {
    await server.checkout("ann", 1)
    const status = (await (await fetch(`${server.base}/status`)).json()) as Record<string, unknown>
    const response = await fetch(`${server.base}/events`)
    expect(response.headers.get("content-type")).toContain("text/event-stream")
    const [first] = await messages(response.body!, 1)
    expect(first).toMatchObject({ ...status, engine: "embedded", health: "ok", checkouts_per_second: expect.any(Number), purchases_per_second: expect.any(Number), outcomes: expect.any(Object) })
  })
})

test("SIGTERM stops the server at once and cleanly while a browser watches the live page", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fs-events-"))
  const s = await startServer({ DATA_DIR: dir, REDIS_URL: "", DATABASE_URL: "", SALE_ITEMS: "5" })
  try {
    const response = await fetch(`${s.base}/events`)
    const reader = response.body!.getReader()
    await reader.read()
    const started = performance.now()
    expect(await s.stop("SIGTERM")).toBe(0)
    expect(performance.now() - started).toBeLessThan(5000)
    expect(s.output()).toContain("stopped")
  } finally {
    await s.stop("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
  }
})
