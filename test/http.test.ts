/** The HTTP contract: statuses, bodies, validation, idempotency, status, health and the OpenAPI document. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { engines, harness, type Harness } from "./support/harness"
import { codeToStatus } from "../src/errors"

for (const engine of engines) describe(`${engine} engine`, () => {
  let h: Harness
  beforeAll(async () => {
    h = await harness({ saleItems: 20, userLimit: 2, holdSeconds: 60 }, engine)
  })
  afterAll(() => h.close())

  const saleId = () => Math.floor(h.clock.now / (h.config.salePeriodSeconds * 1000))

  // The tests below share one sale; each uses its own users and items, and /status checks the sum of them all.
  describe("POST /checkout", () => {
    test("holds the item and answers with a code, the sale, the item and the expiry", async () => {
      const { status, headers, body } = await h.checkout("ann", 1)
      expect(status).toBe(200)
      expect(headers.get("content-type")).toContain("application/json")
      expect(body).toEqual({
        message: "success",
        code: expect.stringMatching(/^\d+\.[A-Za-z0-9_-]{22}$/),
        sale_id: saleId(),
        item: { id: 1, name: expect.any(String), image: expect.stringMatching(/^https:\/\//) },
        expires_at: new Date(h.clock.now + 60_000).toISOString(),
      })
    })

    test("the same user checking out the same item again gets 200 with the same code", async () => {
      const first = await h.checkout("bea", 2)
      const again = await h.checkout("bea", "item2")
      expect(again.status).toBe(200)
      expect(again.body).toEqual(first.body)
    })

    test("id may be written item42", async () => {
      const { status, body } = await h.checkout("cal", "item3")
      expect(status).toBe(200)
      expect(body.item.id).toBe(3)
    })

    test("another user's hold is 409 item_reserved", async () => {
      expect(await h.checkout("dee", 1)).toMatchObject({ status: 409, body: { error: "item_reserved", message: expect.any(String) } })
    })

    test("an id outside 1..SALE_ITEMS is 404 unknown_item", async () => {
      expect((await h.checkout("dee", 0)).body.error).toBe("unknown_item")
      expect(await h.checkout("dee", 21)).toMatchObject({ status: 404, body: { error: "unknown_item" } })
    })

    test("malformed, missing or repeated parameters are 400 invalid_request naming the parameter", async () => {
      const paths = ["/checkout?id=9", "/checkout?user_id=zed", "/checkout?user_id=&id=9", `/checkout?user_id=${"a".repeat(65)}&id=9`, "/checkout?user_id=a%20b&id=9", "/checkout?user_id=zed&id=abc",
        "/checkout?user_id=zed&id=-1", "/checkout?user_id=zed&id=1234567890", "/checkout?user_id=zed&id=1.5", "/checkout?user_id=zed&id=9&id=10", "/checkout?user_id=zed&user_id=yan&id=9",
        // A repeat in another spelling is still a repeat: names are compared decoded.
        "/checkout?user%5Fid=zed&user_id=yan&id=9", "/checkout?user_id=zed&id=9&%69d=10", "/checkout?user_id=zed&i%64=9&id=10", "/checkout?%75ser_id=zed&user%5fid=yan&id=9",
        "/checkout?user_id=%E0%A4%A&id=9", "/checkout?user_id=zed&id=%"]
      for (const path of paths) {
        const { status, body } = await h.call("POST", path)
        expect({ path, status, error: body.error }).toEqual({ path, status: 400, error: "invalid_request" })
        expect(body.message).toMatch(/user_id|id/)
      }
    })

    test("the parameters may come in a JSON, form or multipart body instead of the query", async () => {
      const json = await h.call("POST", "/checkout", { body: JSON.stringify({ user_id: "jo", id: 11 }), headers: { "content-type": "application/json" } })
      expect(json).toMatchObject({ status: 200, body: { item: { id: 11 } } })
      expect(await h.call("POST", "/checkout", { body: "user_id=jo&id=item12", headers: { "content-type": "application/x-www-form-urlencoded" } })).toMatchObject({ status: 200, body: { item: { id: 12 } } })
      const form = new FormData()
      form.set("user_id", "kit")
      form.set("id", "13")
      expect(await h.call("POST", "/checkout", { body: form })).toMatchObject({ status: 200, body: { item: { id: 13 } } })
      // Half in the query, half in the body.
      expect(await h.call("POST", "/checkout?user_id=kit", { body: '{"id": "14"}', headers: { "content-type": "application/json; charset=utf-8" } })).toMatchObject({ status: 200, body: { item: { id: 14 } } })
      const bought = await h.call("POST", "/purchase", { body: JSON.stringify({ code: json.body.code }), headers: { "content-type": "application/json" } })
      expect(bought).toMatchObject({ status: 200, body: { user_id: "jo", item: { id: 11 } } })
    })

    test("a parameter given in both the query and the body, or a body that cannot be read, is 400 invalid_request", async () => {
      const cases: [string, string, string, RegExp][] = [
        ["/checkout?user_id=lu&id=15", "application/json", '{"id": 15}', /id is given both/],
        ["/checkout", "application/json", "{bad json", /not valid JSON/],
        ["/checkout", "application/json", '[{"user_id": "lu", "id": 15}]', /must be an object/],
        ["/checkout", "application/json", '{"user_id": "lu", "id": 1.5}', /id must be/],
        ["/checkout", "application/json", '{"user_id": ["lu"], "id": 15}', /user_id must be a string/],
        ["/checkout", "application/x-www-form-urlencoded", "user_id=lu&id=15&id=16", /id must be given once/],
        ["/checkout", "text/plain", "user_id=lu&id=15", /cannot be read/],
        ["/checkout", "application/json", '{"user_id": "lu"}', /id is required/],
        ["/purchase", "application/json", '{"code": 5}', /code must be/],
      ]
      for (const [path, type, body, message] of cases) {
        const answer = await h.call("POST", path, { body, headers: { "content-type": type } })
        expect({ path, body, status: answer.status, error: answer.body.error, message: message.test(answer.body.message) }).toEqual({ path, body, status: 400, error: "invalid_request", message: true })
      }
      // Nothing was decided for any of them.
      expect((await h.checkout("lu", 15)).status).toBe(200)
    })

    test("a user at USER_LIMIT purchases plus holds is 429 user_limit", async () => {
      const first = await h.checkout("eve", 4)
      expect((await h.purchase(first.body.code)).status).toBe(200)
      expect((await h.checkout("eve", 5)).status).toBe(200)
      expect(await h.checkout("eve", 6)).toMatchObject({ status: 429, body: { error: "user_limit" } })
    })

    test("a sold item is 409 item_sold", async () => {
      expect(await h.checkout("fay", 4)).toMatchObject({ status: 409, body: { error: "item_sold" } })
    })
  })

  describe("POST /purchase", () => {
    test("buys the held item once; the code's second use is 409 code_used", async () => {
      const held = await h.checkout("gus", 7)
      h.clock.now += 1
      const bought = await h.purchase(held.body.code)
      expect(bought.status).toBe(200)
      expect(bought.body).toEqual({ message: "success", sale_id: saleId(), user_id: "gus", item: held.body.item, purchased_at: new Date(h.clock.now).toISOString() })
      expect(await h.purchase(held.body.code)).toMatchObject({ status: 409, body: { error: "code_used" } })
    })

    test("a code never issued is 404 code_not_found", async () => {
      expect(await h.purchase(`${saleId()}.AAAAAAAAAAAAAAAAAAAAAA`)).toMatchObject({ status: 404, body: { error: "code_not_found" } })
    })

    test("a malformed, missing or repeated code is 400 invalid_request", async () => {
      expect(await h.call("POST", "/purchase")).toMatchObject({ status: 400, body: { error: "invalid_request" } })
      expect(await h.purchase("not-a-code")).toMatchObject({ status: 400, body: { error: "invalid_request" } })
      const code = `${saleId()}.AAAAAAAAAAAAAAAAAAAAAA`
      expect(await h.call("POST", `/purchase?code=${code}&code=${code}`)).toMatchObject({ status: 400, body: { error: "invalid_request" } })
      expect(await h.call("POST", `/purchase?code=${code}&c%6Fde=${code}`)).toMatchObject({ status: 400, body: { error: "invalid_request" } })
    })

    test("an expired hold's code is 404 code_not_found, and the item can be held again", async () => {
      const before = await h.checkout("hal", 8)
      h.clock.now += 60_000
      expect((await h.purchase(before.body.code)).body.error).toBe("code_not_found")
      expect((await h.checkout("ivy", 8)).status).toBe(200)
    })
  })

  describe("GET /status", () => {
    test("reports the current sale and counts every decision above", async () => {
      const { status, body } = await h.call("GET", "/status")
      const period = h.config.salePeriodSeconds * 1000
      expect(status).toBe(200)
      expect(body).toEqual({
        sale_id: saleId(),
        name: `Sale ${saleId()}`,
        started_at: new Date(saleId() * period).toISOString(),
        ends_at: new Date((saleId() + 1) * period).toISOString(),
        seconds_remaining: Math.ceil(((saleId() + 1) * period - h.clock.now) / 1000),
        items_total: 20,
        items_sold: 3,
        items_reserved: 1,
        items_available: 16,
        checkouts: { accepted: 14, rejected: 5 },
        purchases: { accepted: 3, rejected: 3 },
        sale_status: "active",
      })
    })
  })

  describe("GET /health", () => {
    test("is ok with every check when Redis and PostgreSQL are up", async () => {
      await h.drained()
      const { status, body } = await h.call("GET", "/health")
      expect(status).toBe(200)
      const checks = engine === "redis" ? { engine: "redis", redis: { status: "ok" }, postgres: { status: "ok" }, ledger: { status: "ok", backlog_entries: 0 } } : { engine: "embedded", sqlite: { status: "ok" } }
      expect(body).toMatchObject({ status: "ok", checks })
    })
  })

  describe("routing", () => {
    test("a wrong method on a known path is 405 with Allow", async () => {
      const cases: [string, string, string][] = [["GET", "/checkout", "POST"], ["DELETE", "/purchase", "POST"], ["POST", "/status", "GET, HEAD"], ["PUT", "/health", "GET, HEAD"], ["POST", "/metrics", "GET, HEAD"], ["POST", "/events", "GET"], ["POST", "/", "GET, HEAD"]]
      for (const [method, path, allow] of cases) {
        const response = await h.call(method, path)
        expect({ path, status: response.status, error: response.body.error, allow: response.headers.get("allow") }).toEqual({ path, status: 405, error: "method_not_allowed", allow })
      }
    })

    test("an unknown path is 404 not_found with the error body", async () => {
      expect(await h.call("GET", "/nope")).toMatchObject({ status: 404, body: { error: "not_found", message: expect.any(String) } })
    })
  })

  describe("OpenAPI", () => {
    test("documents every endpoint and, for each, its error codes", async () => {
      const { status, body } = await h.call("GET", "/swagger/json")
      expect(status).toBe(200)
      expect(Object.keys(body.paths).sort()).toEqual([
        "/admin/actions", "/admin/holds/{code}", "/admin/sales", "/admin/sales/{id}", "/admin/sales/{id}/audit", "/admin/sales/{id}/end", "/admin/sales/{id}/orders", "/admin/sales/{id}/pause",
        "/admin/sales/{id}/report", "/admin/sales/{id}/resume", "/admin/users/{user_id}",
        "/checkout", "/events", "/health", "/items", "/items/{id}", "/metrics", "/purchase", "/status",
      ])
      const codes = (op: any) => Object.values(op.responses).flatMap((r: any) => r.content?.["application/json"]?.schema?.properties?.error?.enum ?? [])
      expect(codes(body.paths["/checkout"].post).sort()).toEqual(["body_too_large", "invalid_request", "item_reserved", "item_sold", "no_active_sale", "rate_limited", "sale_paused", "sold_out", "unavailable", "unknown_item", "url_too_long", "user_limit"])
      expect(codes(body.paths["/purchase"].post).sort()).toEqual(["body_too_large", "code_not_found", "code_used", "invalid_request", "rate_limited", "unavailable", "url_too_long"])
      for (const code of codes(body.paths["/checkout"].post)) expect(body.paths["/checkout"].post.responses[codeToStatus[code as keyof typeof codeToStatus]]).toBeDefined()
      expect(Object.keys(body.paths["/checkout"].post.responses[200].content["application/json"].schema.properties).sort()).toEqual(["code", "expires_at", "item", "message", "sale_id"])
      expect(body.paths["/checkout"].post.parameters.map((p: any) => p.name).sort()).toEqual(["id", "user_id"])
    })

    test("the docs page loads its script from this server, not a CDN", async () => {
      const page = await h.call("GET", "/swagger")
      expect(page.status).toBe(200)
      expect(page.body).toContain('src="/swagger/scalar.js"')
      expect(page.body).not.toMatch(/https?:\/\/(cdn|unpkg|fonts)/)
      const script = await h.app.handle(new Request("http://localhost/swagger/scalar.js"))
      expect(script.status).toBe(200)
      expect((await script.text()).length).toBeGreaterThan(100_000)
    })
  })
})
