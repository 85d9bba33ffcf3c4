/** Admission control: a token bucket per user (per code on purchase) and optionally per IP, in front of the engines. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { admission, clientAddress, tokenBuckets } from "../src/http/ratelimit"
import { createMetrics } from "../src/metrics"
import { engines, harness, serve, type Harness } from "./support/harness"

describe("token buckets", () => {
  test("a client may burst to the bucket's size, then gets one request per 1/rate seconds", () => {
    const buckets = tokenBuckets(2, 4) // 2 per second, bursts of 4
    const at = 1_000_000
    expect([0, 0, 0, 0].map(() => buckets.take("ann", at))).toEqual([0, 0, 0, 0])
    expect(buckets.take("ann", at)).toBe(500) // the next token in 500 ms
    expect(buckets.take("bob", at)).toBe(0) // others have their own bucket
    expect(buckets.take("ann", at + 499)).toBe(1)
    expect(buckets.take("ann", at + 500)).toBe(0)
    expect(buckets.take("ann", at + 500)).toBeGreaterThan(0)
    // Idle for the bucket's whole span: a full burst again.
    expect([0, 0, 0, 0].map(() => buckets.take("ann", at + 3000))).toEqual([0, 0, 0, 0])
  })

  test("a refused request takes no token", () => {
    const buckets = tokenBuckets(1, 1)
    expect(buckets.take("ann", 0)).toBe(0)
    for (let i = 0; i < 100; i++) expect(buckets.take("ann", 10)).toBeGreaterThan(0)
    expect(buckets.take("ann", 1000)).toBe(0)
  })

  test("memory stays bounded under a flood of distinct user ids, and the flood refuses no one", () => {
    const buckets = tokenBuckets(20, 40, 10_000)
    let refused = 0
    for (let i = 0; i < 300_000; i++) refused += buckets.take(`flood${i}`, i / 40) > 0 ? 1 : 0 // 40,000 new ids a second
    expect(refused).toBe(0)
    expect(buckets.size).toBeLessThanOrEqual(10_000)
  })

  test("even when every tracked client is active, the table never grows past its capacity", () => {
    const buckets = tokenBuckets(1, 100, 1000)
    for (let i = 0; i < 50_000; i++) buckets.take(`busy${i}`, 0)
    expect(buckets.size).toBeLessThanOrEqual(1000)
  })
})

describe("client address", () => {
  const server = { requestIP: () => ({ address: "10.0.0.9", family: "IPv4", port: 1 }) }
  const request = (forwarded?: string) => new Request("http://localhost/checkout", { headers: forwarded ? { "x-forwarded-for": forwarded } : {} })

  test("X-Forwarded-For is ignored unless proxies are trusted", () => {
    expect(clientAddress(request("1.2.3.4"), server, 0)).toBe("10.0.0.9")
  })

  test("behind trusted proxies, the address the outermost one saw; what the client wrote before it is not believed", () => {
    expect(clientAddress(request("6.6.6.6, 1.2.3.4"), server, 1)).toBe("1.2.3.4")
    expect(clientAddress(request("6.6.6.6, 1.2.3.4, 172.16.0.2"), server, 2)).toBe("1.2.3.4")
    expect(clientAddress(request("1.2.3.4"), server, 3)).toBe("1.2.3.4")
    expect(clientAddress(request(), server, 1)).toBe("10.0.0.9")
  })
})

test("with no limits configured, admission control admits everything", () => {
  const gate = admission({}, createMetrics())
  for (let i = 0; i < 1000; i++) expect(gate.checkout("ann", new Request("http://localhost/"))).toBeUndefined()
  expect(gate.entries()).toEqual({ user: 0, ip: 0 })
})

for (const engine of engines) describe(`${engine} engine`, () => {
  let h: Harness
  let server: ReturnType<typeof serve>
  beforeAll(async () => {
    // One request per second and bursts of three per user; per IP, bursts of six.
    h = await harness({ saleItems: 50, userLimit: 10 }, engine, { limits: { rateLimitPerUser: 1, rateLimitPerIp: 2, rateLimitBurstSeconds: 3, trustProxyHops: 1 } })
    server = serve(h)
  })
  afterAll(async () => {
    await server.stop()
    await h.close()
  })

  const post = (path: string, from: string) => fetch(`${server.base}${path}`, { method: "POST", headers: { "x-forwarded-for": from } })

  test("over the per-user limit: 429 rate_limited with Retry-After, not decided, not counted, not kept", async () => {
    const answers = []
    for (let id = 1; id <= 4; id++) answers.push(await post(`/checkout?user_id=ann&id=${id}`, "1.1.1.1"))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 429])
    expect(answers[3]!.headers.get("retry-after")).toMatch(/^[1-9]\d*$/)
    expect(await answers[3]!.json()).toEqual({ error: "rate_limited", message: expect.stringContaining("try again") })
    // Another user is not affected.
    expect((await post("/checkout?user_id=bob&id=9", "1.1.1.2")).status).toBe(200)
    await h.drained()
    expect((await h.call("GET", "/status")).body.checkouts).toEqual({ accepted: 4, rejected: 0 })
    expect(await h.count("select count(*) as n from checkout_attempts where item_id = 4")).toBe(0)
  })

  test("purchases are limited per code: retrying one code in a loop is refused, other codes are not", async () => {
    const held = (await (await post("/checkout?user_id=cal&id=20", "2.2.2.1")).json()) as { code: string }
    const statuses = []
    for (let i = 0; i < 4; i++) statuses.push((await post(`/purchase?code=${held.code}`, "2.2.2.2")).status)
    expect(statuses).toEqual([200, 409, 409, 429])
    const other = (await (await post("/checkout?user_id=dee&id=21", "2.2.2.3")).json()) as { code: string }
    expect((await post(`/purchase?code=${other.code}`, "2.2.2.4")).status).toBe(200)
  })

  test("per client IP behind a trusted proxy: fresh users from one address share its bucket", async () => {
    const statuses = []
    for (let i = 0; i < 7; i++) statuses.push((await post(`/checkout?user_id=fresh${i}&id=${30 + i}`, "3.3.3.3")).status)
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200, 429])
    expect((await post("/checkout?user_id=fresh9&id=40", "3.3.3.4")).status).toBe(200)
  })
})
