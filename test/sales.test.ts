/**
 * A shop's sale on both engines: planned sales created through the operator API, with items of several units
 * and per-user limits; the operator API's access; the storefront read (/items) and CORS.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { engines, harness, type Harness } from "./support/harness"
import { until } from "./support/services"
import { firstPlannedId } from "../src/sale/sales"

const token = "operator-token-0123456789abcdefghij"
const iso = (ms: number) => new Date(ms).toISOString()
const minute = 60_000

const items = [
  { id: 101, name: "Sneaker, limited", image: "https://shop.example/s.jpg", price: 120, stock: 5, per_user: 2 },
  { id: 102, name: 'The "Cap"', image: "/img/cap.jpg", stock: 1 },
  { id: 103, name: "Sock", image: "/img/sock.jpg", stock: 3 },
]

for (const engine of engines) describe(`${engine} engine, planned sales`, () => {
  let h: Harness
  let opens: number
  beforeAll(async () => {
    h = await harness({ saleSchedule: "planned", saleItems: 5, userLimit: 3, holdSeconds: 60 }, engine, { adminToken: token, corsOrigins: ["https://shop.example"] })
    opens = h.clock.now + 10 * minute
  })
  afterAll(() => h.close())

  const define = (over: Record<string, unknown> = {}) => ({ name: "Friday drop", starts_at: iso(opens), ends_at: iso(opens + 60 * minute), user_limit: 3, hold_seconds: 60, items, ...over })

  test("the operator API needs the token: 401 with WWW-Authenticate, and a wrong token changes nothing", async () => {
    const none = await h.admin("GET", "/admin/sales", undefined, "")
    expect(none).toMatchObject({ status: 401, body: { error: "unauthorized" } })
    expect(none.headers.get("www-authenticate")).toStartWith("Bearer")
    expect(await h.admin("POST", "/admin/sales", define(), "x".repeat(40))).toMatchObject({ status: 401, body: { error: "unauthorized" } })
    // Unknown paths under /admin say nothing without the token either.
    expect((await h.admin("GET", "/admin/nothing-here", undefined, "")).status).toBe(401)
    expect((await h.admin("GET", "/admin/nothing-here")).status).toBe(404)
    expect((await h.admin("GET", "/admin/sales")).body).toEqual({ sales: [] })
  })

  test("a planned sale is created with an id no sale has used, listed, and read back with its items", async () => {
    const created = await h.admin("POST", "/admin/sales", define())
    expect(created.status).toBe(201)
    expect(created.body).toMatchObject({ id: firstPlannedId, kind: "planned", name: "Friday drop", status: "scheduled", starts_at: iso(opens), user_limit: 3, items_total: 3, units_total: 9 })
    expect(created.body.items).toEqual([
      { id: 101, name: "Sneaker, limited", image: "https://shop.example/s.jpg", price: 120, stock: 5, per_user: 2, available: 5 },
      { id: 102, name: 'The "Cap"', image: "/img/cap.jpg", stock: 1, per_user: 1, available: 1 },
      { id: 103, name: "Sock", image: "/img/sock.jpg", stock: 3, per_user: 1, available: 3 },
    ].map(({ available, ...rest }) => (available === undefined ? rest : expect.objectContaining(rest))))
    expect((await h.admin("GET", "/admin/sales")).body.sales.map((s: { id: number }) => s.id)).toEqual([firstPlannedId])
    expect((await h.admin("GET", `/admin/sales/${firstPlannedId}`)).body.name).toBe("Friday drop")
    expect((await h.admin("GET", "/admin/sales/42")).status).toBe(404)
    // Kept as an operator action.
    expect((await h.admin("GET", "/admin/actions")).body.actions[0]).toMatchObject({ action: "create_sale", sale_id: firstPlannedId, details: { name: "Friday drop", items: 3, units: 9 } })
  })

  test("a bad definition is 400 naming every bad field; an overlapping one is 409 sale_overlaps naming the other", async () => {
    const bad = await h.admin("POST", "/admin/sales", define({ name: "", ends_at: iso(opens - 1), user_limit: 0, colour: "red", items: [{ id: 1, name: "A", image: "ftp://x" }, { id: 1, name: "B", image: "/b", stock: -1 }] }))
    expect(bad.status).toBe(400)
    expect(bad.body.error).toBe("invalid_request")
    expect(Object.keys(bad.body.fields).sort()).toEqual(["colour", "ends_at", "items[0].image", "items[1].stock", "name", "user_limit"])
    expect(bad.body.message).toContain("6 fields are invalid")
    expect((await h.admin("POST", "/admin/sales", { ...define(), items: [] })).body.fields).toHaveProperty("items")
    expect((await h.admin("POST", "/admin/sales", "not json")).status).toBe(400)
    const overlap = await h.admin("POST", "/admin/sales", define({ starts_at: iso(opens + 30 * minute), ends_at: iso(opens + 90 * minute) }))
    expect(overlap).toMatchObject({ status: 409, body: { error: "sale_overlaps", overlaps: [firstPlannedId] } })
    expect((await h.admin("GET", "/admin/sales")).body.sales).toHaveLength(1)
  })

  test("before it opens: checkout is 409 no_active_sale naming it, with Retry-After; /status says scheduled; /items shows its items", async () => {
    const early = await h.checkout("ann", 101)
    expect(early).toMatchObject({ status: 409, body: { error: "no_active_sale", next_sale: { id: firstPlannedId, name: "Friday drop", starts_at: iso(opens) } } })
    expect(Number(early.headers.get("retry-after"))).toBe(Math.ceil((opens - h.clock.now) / 1000))
    expect((await h.call("GET", "/status")).body).toMatchObject({ sale_id: firstPlannedId, name: "Friday drop", sale_status: "scheduled", items_total: 9, items_sold: 0, checkouts: { accepted: 0, rejected: 0 } })
    const shelf = await h.call("GET", "/items")
    expect(shelf.body).toMatchObject({ sale_id: firstPlannedId, total: 3, items: [{ id: 101, stock: 5, available: 5, price: 120 }, { id: 102 }, { id: 103 }] })
    // An attempt on no sale is answered, not kept.
    await h.drained()
    expect(await h.count("select count(*) as n from checkout_attempts")).toBe(0)
  })

  test("inside its window it sells units: the lowest free one per hold, per_user and the sale's limit apply", async () => {
    await h.moveTo(opens + 1000)
    const first = await h.checkout("ann", 101)
    expect(first).toMatchObject({ status: 200, body: { sale_id: firstPlannedId, item: { id: 101, name: "Sneaker, limited", price: 120 } } })
    expect((await h.purchase(first.body.code)).status).toBe(200)
    const second = await h.checkout("ann", 101)
    expect(second.status).toBe(200)
    expect((await h.purchase(second.body.code)).status).toBe(200)
    expect(await h.checkout("ann", 101)).toMatchObject({ status: 429, body: { error: "user_limit" } })
    expect((await h.checkout("ann", 103)).status).toBe(200)
    expect(await h.checkout("ann", 102)).toMatchObject({ status: 429, body: { error: "user_limit" } })
    expect((await h.checkout("bob", 102)).status).toBe(200)
    expect(await h.checkout("cat", 102)).toMatchObject({ status: 409, body: { error: "item_reserved" } })
    await h.drained()
    expect((await h.query("select unit from purchases order by unit")).map((r) => Number(r.unit))).toEqual([1, 2])
    expect((await h.query("select unit from checkout_attempts where user_id = 'bob'")).map((r) => Number(r.unit))).toEqual([1])
    expect((await h.call("GET", "/status")).body).toMatchObject({ sale_status: "active", items_sold: 2, items_reserved: 2, items_available: 5 })
  })

  test("/items follows a hold within a second, answers 304 to its own ETag, and names an unknown item 404", async () => {
    // At most a second old: what the test before did shows by then.
    h.clock.now += 1000
    const before = (await until("/items to show the holds so far", async () => {
      const page = await h.call("GET", "/items?limit=2")
      return page.body.items[0].available === 3 ? page : undefined
    }, 5000))!
    expect(before.body.items.map((i: { available: number }) => i.available)).toEqual([3, 0])
    expect(before.body).toMatchObject({ total: 3, offset: 0, limit: 2 })
    const etag = before.headers.get("etag")!
    expect(etag).toMatch(/^".+"$/)
    expect((await h.call("GET", "/items?limit=2", { headers: { "if-none-match": etag } })).status).toBe(304)
    expect((await h.checkout("dan", 101)).status).toBe(200)
    h.clock.now += 1000
    const after = await until("/items to show the hold", async () => {
      const page = await h.call("GET", "/items?limit=2")
      return page.body.items[0].available === 2 ? page : undefined
    }, 5000)
    expect(after!.headers.get("etag")).not.toBe(etag)
    expect((await h.call("GET", "/items/101")).body).toMatchObject({ id: 101, stock: 5, available: 2 })
    expect(await h.call("GET", "/items/999")).toMatchObject({ status: 404, body: { error: "unknown_item" } })
    expect((await h.call("GET", "/items?limit=5000")).status).toBe(400)
  })

  test("CORS: a storefront's origin gets its preflight and its headers; another origin does not; /admin never", async () => {
    const preflight = await h.call("OPTIONS", "/checkout", { headers: { origin: "https://shop.example", "access-control-request-method": "POST" } })
    expect(preflight.status).toBe(204)
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://shop.example")
    expect(preflight.headers.get("access-control-allow-methods")).toContain("POST")
    const page = await h.call("GET", "/items", { headers: { origin: "https://shop.example" } })
    expect(page.headers.get("access-control-allow-origin")).toBe("https://shop.example")
    expect(page.headers.get("access-control-expose-headers")).toContain("ETag")
    const refused = await h.call("POST", "/checkout?user_id=eve&id=102", { headers: { origin: "https://shop.example" } })
    expect(refused.headers.get("access-control-allow-origin")).toBe("https://shop.example")
    expect((await h.call("GET", "/status", { headers: { origin: "https://evil.example" } })).headers.get("access-control-allow-origin")).toBeNull()
    const adminPreflight = await h.call("OPTIONS", "/admin/sales", { headers: { origin: "https://shop.example", "access-control-request-method": "POST" } })
    expect(adminPreflight.headers.get("access-control-allow-origin")).toBeNull()
    expect((await h.admin("GET", "/admin/sales")).headers.get("access-control-allow-origin")).toBeNull()
  })

  test("PATCH changes the name and an item's stock; a stock below a unit sold or held is 409 stock_in_use", async () => {
    const raised = await h.admin("PATCH", `/admin/sales/${firstPlannedId}`, { name: "Friday drop, restocked", items: [{ id: 102, stock: 2 }] })
    expect(raised).toMatchObject({ status: 200, body: { name: "Friday drop, restocked", units_total: 10 } })
    expect((await h.checkout("cat", 102)).status).toBe(200)
    // 101: units 1 and 2 sold, 3 held by dan: 3 is as low as it goes.
    expect(await h.admin("PATCH", `/admin/sales/${firstPlannedId}`, { items: [{ id: 101, stock: 2 }] })).toMatchObject({ status: 409, body: { error: "stock_in_use", item: 101, lowest_stock: 3 } })
    expect(await h.admin("PATCH", `/admin/sales/${firstPlannedId}`, { items: [{ id: 101, stock: 3 }] })).toMatchObject({ status: 200, body: { units_total: 8 } })
    expect(await h.checkout("eve", 101)).toMatchObject({ status: 409, body: { error: "item_reserved" } })
    expect((await h.admin("PATCH", `/admin/sales/${firstPlannedId}`, { items: [{ id: 999, stock: 3 }], hold_seconds: 0 })).body.fields).toEqual({ "items[0].id": expect.any(String), hold_seconds: expect.any(String) })
    expect(await h.admin("DELETE", `/admin/sales/${firstPlannedId}`)).toMatchObject({ status: 409, body: { error: "sale_started" } })
  })

  test("after its end: no_active_sale with no next sale; a hold granted before the end is still bought; a later sale can be planned and deleted", async () => {
    await h.moveTo(opens + 60 * minute - 10_000)
    const held = await h.checkout("fay", 103)
    expect(held.status).toBe(200)
    await h.moveTo(opens + 60 * minute + 1000)
    expect(await h.checkout("gus", 103)).toMatchObject({ status: 409, body: { error: "no_active_sale", next_sale: null } })
    expect((await h.call("GET", "/status")).body).toMatchObject({ sale_id: null, sale_status: "none", items_total: 0 })
    expect(await h.purchase(held.body.code)).toMatchObject({ status: 200, body: { sale_id: firstPlannedId, item: { id: 103 } } })
    const later = await h.admin("POST", "/admin/sales", define({ name: "Next week", starts_at: iso(opens + 7 * 24 * 60 * minute), ends_at: iso(opens + 7 * 24 * 60 * minute + minute) }))
    expect(later).toMatchObject({ status: 201, body: { id: firstPlannedId + 1 } })
    expect(await h.admin("DELETE", `/admin/sales/${firstPlannedId + 1}`)).toMatchObject({ status: 200, body: { message: "deleted" } })
    expect((await h.admin("GET", "/admin/sales")).body.sales.map((s: { id: number }) => s.id)).toEqual([firstPlannedId])
    expect((await h.admin("GET", "/admin/actions?limit=3")).body.actions.map((a: { action: string }) => a.action)).toEqual(["delete_sale", "create_sale", "change_sale"])
  })
})

for (const engine of engines) describe(`${engine} engine, recurring schedule`, () => {
  let h: Harness
  beforeAll(async () => {
    h = await harness({ saleItems: 5 }, engine, { adminToken: token })
  })
  afterAll(() => h.close())

  test("planning is off (409 planned_sales_off); the list names the current recurring sale", async () => {
    expect(await h.admin("POST", "/admin/sales", { name: "x" })).toMatchObject({ status: 409, body: { error: "planned_sales_off" } })
    const saleId = Math.floor(h.clock.now / (h.config.salePeriodSeconds * 1000))
    expect((await h.admin("GET", "/admin/sales")).body.sales).toEqual([expect.objectContaining({ id: saleId, kind: "recurring", status: "active", units_total: 5 })])
    expect(await h.admin("PATCH", `/admin/sales/${saleId}`, { name: "y" })).toMatchObject({ status: 409, body: { error: "planned_sales_off" } })
  })

  test("without ADMIN_TOKEN every /admin path is 404", async () => {
    const off = await harness({ saleItems: 5 }, engine)
    try {
      for (const path of ["/admin/sales", "/admin/actions", "/admin/whatever"]) expect((await off.admin("GET", path, undefined, token)).status).toBe(404)
    } finally {
      await off.close()
    }
  })
})

describe("the operator API's access", () => {
  test("an address that keeps failing is refused 429 before its token is looked at, the right one included", async () => {
    const h = await harness({}, "embedded", { adminToken: token })
    try {
      for (let i = 0; i < 10; i++) expect((await h.admin("GET", "/admin/sales", undefined, `wrong-${i}`.padEnd(40, "x"))).status).toBe(401)
      const refused = await h.admin("GET", "/admin/sales")
      expect(refused).toMatchObject({ status: 429, body: { error: "rate_limited" } })
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0)
    } finally {
      await h.close()
    }
  })
})
