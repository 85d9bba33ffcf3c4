/**
 * Running a sale through the operator API, through the compiled binary, on the embedded engine and on Redis with
 * PostgreSQL (two instances): pause, resume and end; a hold released by hand; a support desk's view of a user;
 * the orders exported; the audit of the live state against the store, clean after a sell-out under load and
 * finding every kind of planted difference. Without the token, nothing changes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { readFileSync } from "node:fs"
import { compiledBinary } from "./support/binary"
import { until } from "./support/services"
import { backends, stopBackends, type BackendEnv } from "./support/backends"
import { request, startServer, type ServerProcess } from "./support/process"
import { saleViolations, tally, type Answer } from "./support/invariants"
import { inFlight } from "./support/harness"

const token = "operating-token-0123456789abcdef0123"
const iso = (ms: number) => new Date(ms).toISOString()

async function admin(base: string, method: string, path: string, body?: unknown, bearer = token) {
  const response = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await response.text()
  let json: any
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: response.status, body: json, text, headers: response.headers }
}

/** RFC 4180 CSV: quoted fields may hold commas, quotes (doubled) and line breaks; records end with CRLF. */
function parseCsv(text: string): string[][] {
  const records: string[][] = []
  let field = ""
  let record: string[] = []
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++
      else if (c === '"') quoted = false
      else field += c
    } else if (c === '"') quoted = true
    else if (c === ",") record.push(field), (field = "")
    else if (c === "\r" && text[i + 1] === "\n") {
      record.push(field)
      records.push(record)
      ;(record = []), (field = ""), i++
    } else field += c
  }
  return records
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024

afterAll(stopBackends)

for (const backend of backends) {
  describe(backend.name, () => {
    let servers: ServerProcess[] = []
    let b: BackendEnv
    let binary: string
    let dir: string
    const env = () => ({ ...b.env, SALE_SCHEDULE: "planned", ADMIN_TOKEN: token, USER_LIMIT: "4", HOLD_SECONDS: "600" })
    const base = (i: number) => servers[i % servers.length]!.base
    const last = () => base(servers.length - 1)
    /** Plans a sale that opens in a moment (the previous one ended just now) and ends at `endsAt`; answers its id once every instance sells it. */
    const plan = async (name: string, items: unknown[], endsAt: number, extra: Record<string, unknown> = {}) => {
      const created = await admin(base(0), "POST", "/admin/sales", { name, starts_at: iso(Date.now() + 200), ends_at: iso(endsAt), items, ...extra })
      if (created.status !== 201) throw new Error(`${created.text}\n${servers.map((s) => s.output()).join("\n---\n")}`)
      const id = created.body.id as number
      for (let i = 0; i < servers.length; i++) {
        await until(`instance ${i} to sell sale ${id}`, async () => {
          const status = (await request(base(i), "GET", "/status")).body
          return status.sale_id === id && status.sale_status !== "scheduled"
        })
      }
      return id
    }
    /** Ends a sale now, so that the next one can open. */
    const end = (id: number) => admin(base(0), "POST", `/admin/sales/${id}/end`)

    beforeAll(async () => {
      ;({ binary, dir } = await compiledBinary())
      b = await backend.env()
      servers = await Promise.all(Array.from({ length: b.instances }, () => startServer(env(), [binary], dir)))
    }, 60_000)
    afterAll(async () => {
      for (const s of servers) await s.stop("SIGKILL")
      await b?.close()
    })

    test("pause refuses checkouts on every instance within a second while a live hold is still bought; resume sells again; end closes now", async () => {
      const id = await plan("Pausable", [{ id: 1, name: "Lamp", image: "/l.jpg", stock: 10 }], Date.now() + 3_600_000)
      const held = await request(base(0), "POST", "/checkout?user_id=ann&id=1")
      expect(held.status).toBe(200)

      const paused = await admin(base(0), "POST", `/admin/sales/${id}/pause`)
      expect(paused).toMatchObject({ status: 200, body: { id, paused: true, status: "paused" } })
      const refused = await request(last(), "POST", "/checkout?user_id=bob&id=1")
      expect(refused).toMatchObject({ status: 409, body: { error: "sale_paused" } })
      expect(await request(last(), "POST", `/purchase?code=${held.body.code}`)).toMatchObject({ status: 200, body: { user_id: "ann" } })
      expect((await request(base(0), "GET", "/status")).body).toMatchObject({ sale_id: id, sale_status: "paused" })
      expect((await admin(base(0), "GET", `/admin/sales/${id}`)).body.ends_at).toBe(paused.body.ends_at)

      expect(await admin(last(), "POST", `/admin/sales/${id}/resume`)).toMatchObject({ status: 200, body: { paused: false, status: "active" } })
      expect((await request(base(0), "POST", "/checkout?user_id=bob&id=1")).status).toBe(200)
      const late = await request(base(0), "POST", "/checkout?user_id=cat&id=1")

      const ended = await admin(base(0), "POST", `/admin/sales/${id}/end`)
      expect(ended).toMatchObject({ status: 200, body: { status: "ended" } })
      expect(Date.parse(ended.body.ended_at)).toBeLessThanOrEqual(Date.now())
      expect(await request(last(), "POST", "/checkout?user_id=dan&id=1")).toMatchObject({ status: 409, body: { error: "no_active_sale" } })
      expect(await request(last(), "POST", `/purchase?code=${late.body.code}`)).toMatchObject({ status: 200, body: { user_id: "cat" } })
      expect(await admin(base(0), "POST", `/admin/sales/${id}/pause`)).toMatchObject({ status: 409, body: { error: "sale_ended" } })

      // The paused refusal is kept as an attempt; every action is kept with its client, and counted.
      await until("the refusal to be kept", async () => (await b.query(`select count(*) as n from checkout_attempts where sale_id = ${id} and outcome = 'sale_paused'`))[0]!.n == 1)
      const actions = (await admin(base(0), "GET", `/admin/actions?sale_id=${id}`)).body.actions.map((a: any) => [a.action, a.client])
      expect(actions).toEqual([["end_sale", "127.0.0.1"], ["resume_sale", "127.0.0.1"], ["pause_sale", "127.0.0.1"], ["create_sale", "127.0.0.1"]])
      const metrics = await (await fetch(`${base(0)}/metrics`)).text()
      expect(metrics).toContain('flashsale_admin_actions_total{action="pause_sale"} 1')
    }, 30_000)

    test("a pause survives a kill -9 of every instance and a Redis that comes back empty", async () => {
      const id = await plan("Survivor", [{ id: 1, name: "Lamp", image: "/l.jpg", stock: 10 }], Date.now() + 3_600_000)
      expect((await admin(base(0), "POST", `/admin/sales/${id}/pause`)).status).toBe(200)
      for (let i = 0; i < servers.length; i++) {
        await servers[i]!.stop("SIGKILL")
        servers[i] = await startServer(env(), [binary], dir)
      }
      await b.flush?.()
      expect(await request(last(), "POST", "/checkout?user_id=eve&id=1")).toMatchObject({ status: 409, body: { error: "sale_paused" } })
      expect((await request(base(0), "GET", "/status")).body.sale_status).toBe("paused")
      await end(id)
    }, 60_000)

    test("a hold released by hand: its code is 404, its unit and the user's slot are free, and no rebuild brings it back", async () => {
      const id = await plan("Release", [{ id: 1, name: "One-off", image: "/o.jpg", stock: 1 }, { id: 2, name: "Other", image: "/x.jpg", stock: 5 }], Date.now() + 3_600_000, { user_limit: 1 })
      const held = await request(base(0), "POST", "/checkout?user_id=ann&id=1")
      expect(await request(last(), "POST", "/checkout?user_id=ann&id=2")).toMatchObject({ status: 429, body: { error: "user_limit" } })
      expect((await admin(base(0), "GET", "/admin/users/ann")).body).toMatchObject({ user_id: "ann", sale_id: id, purchases: [], holds: [{ item_id: 1, name: "One-off", unit: 1, code: held.body.code }] })

      const released = await admin(last(), "DELETE", `/admin/holds/${held.body.code}`)
      expect(released).toMatchObject({ status: 200, body: { message: "released", code: held.body.code, sale_id: id, item_id: 1, unit: 1, user_id: "ann" } })
      expect(await request(base(0), "POST", `/purchase?code=${held.body.code}`)).toMatchObject({ status: 404, body: { error: "code_not_found" } })
      expect(await admin(base(0), "DELETE", `/admin/holds/${held.body.code}`)).toMatchObject({ status: 404, body: { error: "code_not_found" } })
      expect((await admin(base(0), "GET", "/admin/users/ann")).body.holds).toEqual([])
      expect((await request(last(), "POST", "/checkout?user_id=ann&id=2")).status).toBe(200)
      const again = await request(base(0), "POST", "/checkout?user_id=bob&id=1")
      expect(again).toMatchObject({ status: 200, body: { item: { id: 1 } } })
      expect(await admin(base(0), "DELETE", `/admin/holds/${again.body.code}`, undefined, "wrong-token-wrong-token-wrong-token")).toMatchObject({ status: 401 })
      expect((await request(base(0), "POST", `/purchase?code=${again.body.code}`)).status).toBe(200)
      expect(await admin(base(0), "DELETE", `/admin/holds/${again.body.code}`)).toMatchObject({ status: 409, body: { error: "code_used" } })
      expect(await admin(base(0), "DELETE", "/admin/holds/not-a-code")).toMatchObject({ status: 400, body: { error: "invalid_request" } })

      // Rebuilt from the store (a restart, or Redis back empty), the released hold stays released.
      const third = await request(base(0), "POST", "/checkout?user_id=cat&id=2")
      expect((await admin(base(0), "DELETE", `/admin/holds/${third.body.code}`)).status).toBe(200)
      if (b.flush) await b.flush()
      else {
        await servers[0]!.stop("SIGKILL")
        servers[0] = await startServer(env(), [binary], dir)
      }
      expect(await request(base(0), "POST", `/purchase?code=${third.body.code}`)).toMatchObject({ status: 404, body: { error: "code_not_found" } })
      expect((await request(last(), "POST", "/checkout?user_id=cat&id=2")).status).toBe(200)
      expect((await admin(base(0), "GET", "/admin/users/cat")).body.holds.map((h: any) => h.code)).not.toContain(third.body.code)
      expect((await admin(base(0), "GET", `/admin/actions?sale_id=${id}&limit=2`)).body.actions.map((a: any) => a.action)).toEqual(["release_hold", "release_hold"])
      await end(id)
    }, 60_000)

    test("orders: the export equals the purchases table, in CSV and in JSON lines, names with commas and quotes included", async () => {
      const items = [
        { id: 7, name: 'Mug, "large"', image: "/m.jpg", price: 12.5, stock: 4, per_user: 4 },
        { id: 8, name: "Tee\nclassic, blue", image: "/t.jpg", stock: 3, per_user: 3 },
      ]
      const id = await plan("Orders", items, Date.now() + 3_600_000)
      for (const [user, item] of [["ann", 7], ["bob", 7], ["ann", 8], ["cat", 8], ["cat", 7]] as const) {
        const held = await request(base(0), "POST", `/checkout?user_id=${user}&id=${item}`)
        expect((await request(last(), "POST", `/purchase?code=${held.body.code}`)).status).toBe(200)
      }
      const kept = await b.query(`select item_id, unit, user_id, code, purchased_at from purchases where sale_id = ${id} order by purchased_at, item_id, unit`)
      const expected = kept.map((r) => {
        const item = items.find((i) => i.id === Number(r.item_id))!
        return { sale_id: id, item_id: Number(r.item_id), unit: Number(r.unit), name: item.name, price: item.price ?? null, user_id: r.user_id, code: r.code, purchased_at: new Date(r.purchased_at).toISOString() }
      })
      expect(expected.length).toBe(5)

      const csv = await admin(last(), "GET", `/admin/sales/${id}/orders`)
      expect(csv.headers.get("content-type")).toBe("text/csv; charset=utf-8")
      const [header, ...rows] = parseCsv(csv.text)
      expect(header).toEqual(["sale_id", "item_id", "unit", "name", "price", "user_id", "code", "purchased_at"])
      expect(rows).toEqual(expected.map((o) => [String(o.sale_id), String(o.item_id), String(o.unit), o.name, o.price === null ? "" : String(o.price), o.user_id, o.code, o.purchased_at]))

      const jsonl = await admin(base(0), "GET", `/admin/sales/${id}/orders?format=jsonl`)
      expect(jsonl.headers.get("content-type")).toBe("application/x-ndjson; charset=utf-8")
      expect(jsonl.text.trimEnd().split("\n").map((line) => JSON.parse(line))).toEqual(expected)
      expect(await admin(base(0), "GET", `/admin/sales/${id}/orders?format=xml`)).toMatchObject({ status: 400, body: { error: "invalid_request" } })
      expect((await admin(base(0), "GET", `/admin/actions?sale_id=${id}&limit=1`)).body.actions[0]).toMatchObject({ action: "export_orders", details: { format: "jsonl" } })

      const report = (await admin(base(0), "GET", `/admin/sales/${id}/report`)).body
      expect(report).toMatchObject({ sale_id: id, units_total: 7, units_sold: 5, revenue: 37.5, sold_out_at: null, attempts: { checkouts: { reserved: 5 }, purchases: { purchased: 5 } } })
      expect(report.items.map((i: any) => [i.id, i.sold])).toEqual([[7, 3], [8, 2]])
      await end(id)
    }, 30_000)

    if (backend.bigExport !== false) test("100,000 orders stream from the store with the server's memory flat", async () => {
      const id = await plan("Big export", [{ id: 1, name: "Ticket", image: "/t.jpg", price: 1, stock: 100_000, per_user: 100_000 }], Date.now() + 3_600_000)
      await end(id)
      const pg = b.flush !== undefined
      const purchasedAt = pg ? "now()" : "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
      const series = pg ? "generate_series(1, 100000) as g(n)" : "(with recursive s(n) as (select 1 union all select n + 1 from s where n < 100000) select n from s) as g"
      await b.write(`insert into purchases (sale_id, item_id, unit, user_id, code, purchased_at) select ${id}, 1, n, 'buyer' || n, '${id}.' || n, ${purchasedAt} from ${series}`)
      const pid = servers[0]!.proc.pid
      const before = rssMb(pid)
      let peak = before
      const sampler = setInterval(() => (peak = Math.max(peak, rssMb(pid))), 20)
      const started = performance.now()
      const response = await fetch(`${base(0)}/admin/sales/${id}/orders`, { headers: { authorization: `Bearer ${token}` } })
      let lines = 0
      let bytes = 0
      for await (const chunk of response.body!) {
        bytes += chunk.length
        for (const byte of chunk) if (byte === 10) lines++
      }
      const seconds = (performance.now() - started) / 1000
      clearInterval(sampler)
      console.log(`${backend.name}: 100,000 orders, ${(bytes / 1e6).toFixed(1)} MB in ${seconds.toFixed(2)} s; server RSS ${before.toFixed(0)} MB before, ${peak.toFixed(0)} MB at most while streaming`)
      expect(lines).toBe(100_001)
      expect(seconds).toBeLessThan(20)
      // The whole export is ~10 MB of CSV and ~30 MB as rows in memory: a batch at a time keeps the server flat.
      expect(peak - before).toBeLessThan(40)
    }, 60_000)

    test("the audit: none of a clean sale sold out under load, then every kind of planted difference, on /health and /metrics until a clean one", async () => {
      const items = Array.from({ length: 10 }, (_, i) => ({ id: i + 1, name: `Item ${i + 1}`, image: "/i.jpg", stock: 5, per_user: 2 }))
      const ends = Date.now() + 6000
      const id = await plan("Audited", items, ends, { hold_seconds: 1, user_limit: 4 })
      const log = { checkouts: [] as Answer[], purchases: [] as Answer[] }
      let turn = 0
      const shopper = (user: string) => async () => {
        for (;;) {
          const held = await request(base(turn++), "POST", `/checkout?user_id=${user}&id=${1 + Math.floor(Math.random() * 10)}`)
          log.checkouts.push(held)
          if (held.status === 200 && Math.random() < 0.8) log.purchases.push(await request(base(turn++), "POST", `/purchase?code=${held.body.code}`))
          if (["sold_out", "no_active_sale"].includes(held.body.error)) return
        }
      }
      await inFlight(16, Array.from({ length: 40 }, (_, i) => shopper(`s${i}`)))
      expect(tally(log.checkouts)).toHaveProperty("sold_out")
      // On Redis, the sale's state is lost and rebuilt from the store before it ends: the audit says so.
      if (b.flush) {
        await until("the journal to drain", async () => (await request(base(0), "GET", "/health")).body.checks?.ledger?.backlog_entries === 0)
        await b.flush()
        expect((await request(base(0), "POST", "/checkout?user_id=late&id=1")).body.error).toBe("sold_out")
      }
      const kept = await until("the automatic audit", async () => (await admin(base(servers.length - 1), "GET", `/admin/sales/${id}/report`)).body.audit ?? undefined, 20_000)
      expect(kept).toMatchObject({ trigger: "auto", ok: true, differences_count: 0, checked: { units_sold: 50 }, rebuilt: b.flush !== undefined })
      // The earlier sales here have other stocks: only this one's limits are checked.
      const limits = { stock: (sale: number) => (sale === id ? 5 : 100_000), perUser: (sale: number) => (sale === id ? 2 : 100_000) }
      expect(await saleViolations(b.query, { userLimit: 4, answers: log, ...limits })).toEqual([])
      // One audit per sale, whichever instance did it.
      expect(Number((await b.query(`select count(*) as n from sale_audits where sale_id = ${id}`))[0]!.n)).toBe(1)

      // Planted behind the server's back: a purchase gone from the store, a live hold only the store has, a refusal
      // only the store has; on Redis also a unit sold only in Redis, a user's count and an item's count changed.
      const [gone] = await b.query(`select item_id, unit, code from purchases where sale_id = ${id} order by item_id, unit limit 1`)
      await b.write(`delete from purchases where sale_id = ${id} and code = '${gone!.code}'`)
      const pg = b.flush !== undefined
      const expiry = pg ? "now() + interval '1 hour'" : "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 hour')"
      const now = pg ? "now()" : "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
      const eventColumn = pg ? "event_id, " : ""
      const eventValue = (e: string) => (pg ? `'${e}', ` : "")
      await b.write(`insert into checkout_attempts (sale_id, ${eventColumn}user_id, item_id, outcome, code, unit, expires_at, created_at) values (${id}, ${eventValue("planted-1")}'ghost', 3, 'reserved', '${id}.ghost', 9, ${expiry}, ${now})`)
      await b.write(`insert into checkout_attempts (sale_id, ${eventColumn}user_id, item_id, outcome, created_at) values (${id}, ${eventValue("planted-2")}'ghost', 4, 'item_sold', ${now})`)
      const kinds = ["counter", "hold", "item", "sold", "user"]
      if (b.redis) {
        const tag = `{sale:${id}}`
        await b.redis.hset(`${tag}:codes`, `${id}.phantom`, `p|2|9|${Date.now()}|phantom`)
        await b.redis.hincrby(`${tag}:users`, "s1", 3)
        const record = (await b.redis.hget(`${tag}:items`, "5"))!.split("|")
        record[2] = String(Number(record[2]) + 1)
        await b.redis.hset(`${tag}:items`, "5", record.join("|"))
      }
      const audit = await admin(last(), "POST", `/admin/sales/${id}/audit`)
      expect(audit).toMatchObject({ status: 200, body: { trigger: "operator", ok: false } })
      expect([...new Set(audit.body.differences.map((d: any) => d.kind))].sort()).toEqual(kinds)
      expect(audit.body.differences).toContainEqual({ kind: "sold", key: `item ${gone!.item_id} unit ${gone!.unit}`, live: expect.objectContaining({ code: gone!.code }), kept: null })
      expect(audit.body.differences).toContainEqual({ kind: "hold", key: "item 3 unit 9", live: null, kept: { code: `${id}.ghost`, user_id: "ghost" } })
      expect(audit.body.differences).toContainEqual(expect.objectContaining({ kind: "counter", key: "checkouts.rejected" }))
      if (b.redis) expect(audit.body.differences).toContainEqual({ kind: "sold", key: "item 2 unit 9", live: { code: `${id}.phantom`, user_id: "phantom" }, kept: null })

      // Every instance says so within a few seconds: /health degraded naming the sale, /metrics counting.
      for (let i = 0; i < servers.length; i++) {
        const health = await until(`instance ${i}'s /health to name the sale`, async () => {
          const h = await request(base(i), "GET", "/health")
          return h.body.checks.audit ? h : undefined
        }, 10_000)
        expect(health!.body).toMatchObject({ status: "degraded", checks: { audit: { status: "differences", sales: [id] } } })
        expect(await (await fetch(`${base(i)}/metrics`)).text()).toContain(`flashsale_audit_differences{sale_id="${id}"} ${audit.body.differences_count}`)
      }
      expect((await admin(base(0), "GET", `/admin/sales/${id}/report`)).body.audit).toMatchObject({ trigger: "operator", differences_count: audit.body.differences_count })

      // Put right, the audit on demand is clean again, and so is /health.
      await b.write(`delete from checkout_attempts where sale_id = ${id} and user_id = 'ghost'`)
      await b.write(`insert into purchases (sale_id, item_id, unit, user_id, code, purchased_at) select sale_id, item_id, unit, user_id, code, created_at from checkout_attempts where sale_id = ${id} and code = '${gone!.code}' and outcome = 'reserved'`)
      if (b.redis) {
        const tag = `{sale:${id}}`
        await b.redis.hdel(`${tag}:codes`, `${id}.phantom`)
        await b.redis.hincrby(`${tag}:users`, "s1", -3)
        const record = (await b.redis.hget(`${tag}:items`, "5"))!.split("|")
        record[2] = String(Number(record[2]) - 1)
        await b.redis.hset(`${tag}:items`, "5", record.join("|"))
      }
      expect(await admin(base(0), "POST", `/admin/sales/${id}/audit`)).toMatchObject({ status: 200, body: { ok: true, differences_count: 0 } })
      await until("/health to be ok again", async () => (await request(last(), "GET", "/health")).body.status === "ok", 10_000)
    }, 60_000)

    test("an audit before the sale is over is refused; without the token nothing changes and nothing is read", async () => {
      const id = await plan("Guarded", [{ id: 1, name: "Lamp", image: "/l.jpg", stock: 3 }], Date.now() + 3_600_000)
      expect(await admin(base(0), "POST", `/admin/sales/${id}/audit`)).toMatchObject({ status: 409, body: { error: "not_auditable" } })
      const held = await request(base(0), "POST", "/checkout?user_id=ann&id=1")
      const wrong = "not-the-token-not-the-token-not-the-token"
      const attempts = [
        ["POST", `/admin/sales/${id}/pause`],
        ["POST", `/admin/sales/${id}/end`],
        ["PATCH", `/admin/sales/${id}`],
        ["DELETE", `/admin/sales/${id}`],
        ["DELETE", `/admin/holds/${held.body.code}`],
        ["POST", `/admin/sales/${id}/audit`],
        ["GET", `/admin/sales/${id}/orders`],
        ["GET", `/admin/sales/${id}/report`],
        ["GET", "/admin/users/ann"],
      ] as const
      for (const [method, path] of attempts) {
        const denied = await admin(base(0), method, path, method === "PATCH" ? { items: [{ id: 1, stock: 1 }] } : undefined, wrong)
        expect([path, denied.status, denied.body?.error]).toEqual([path, 401, "unauthorized"])
      }
      expect((await request(last(), "GET", "/status")).body).toMatchObject({ sale_id: id, sale_status: "active", items_total: 3 })
      expect((await request(last(), "POST", `/purchase?code=${held.body.code}`)).status).toBe(200)
      expect((await b.query(`select action from admin_actions where sale_id = ${id}`)).map((a) => a.action)).toEqual(["create_sale"])
      // Failed attempts count per address: the instance that took them may refuse this address for a minute.
      await admin(last(), "POST", `/admin/sales/${id}/end`)
    }, 30_000)
  })
}
