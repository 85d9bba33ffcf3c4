/**
 * Answers a process already knows (Redis engine, two instances): once Redis has said a sale is sold out, or an
 * item sold, each process answers the flood that follows itself, within a second of that reply. Every such answer
 * is counted once on both instances' /status and kept once in PostgreSQL; a restock or a pause made on the other
 * instance is obeyed at once, since the call that keeps the answers checks the sale's state.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { isolated } from "./support/services"
import { request, startServer, type ServerProcess } from "./support/process"
import { until } from "./support/services"

const token = "known-answers-token-0123456789abcdef"
let servers: ServerProcess[] = []
let e: Awaited<ReturnType<typeof isolated>>

beforeAll(async () => {
  e = await isolated()
  const env = { REDIS_URL: e.redisUrl, DATABASE_URL: e.databaseUrl, SALE_SCHEDULE: "planned", ADMIN_TOKEN: token, USER_LIMIT: "4", HOLD_SECONDS: "600" }
  servers = await Promise.all([startServer(env), startServer(env)])
}, 60_000)
afterAll(async () => {
  for (const s of servers) await s.stop("SIGKILL")
  await e?.close()
})

const base = (i: number) => servers[i % 2]!.base
const admin = async (method: string, path: string, body?: unknown, i = 0) => {
  const r = await fetch(`${base(i)}${path}`, { method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) })
  return { status: r.status, body: (await r.json()) as any }
}
const knownAnswers = async (i: number) => Number(/^flashsale_known_answers_total (\d+)/m.exec(await (await fetch(`${base(i)}/metrics`)).text())?.[1] ?? NaN)
const rejected = async (i: number) => (await request(base(i), "GET", "/status")).body.checkouts.rejected as number
const kept = async (id: number, outcome: string) => Number((await e.sql.unsafe(`select count(*) as n from checkout_attempts where sale_id = ${id} and outcome = '${outcome}'`))[0]!.n)

/** Plans a sale that opens in a moment, ending any sale now open first; its id, once both instances sell it. */
async function plan(name: string, items: unknown[]): Promise<number> {
  const open = (await request(base(0), "GET", "/status")).body
  if (open.sale_id) await admin("POST", `/admin/sales/${open.sale_id}/end`)
  const created = await admin("POST", "/admin/sales", { name, starts_at: new Date(Date.now() + 200).toISOString(), ends_at: new Date(Date.now() + 3_600_000).toISOString(), items })
  expect(created.status).toBe(201)
  const id = created.body.id as number
  for (const i of [0, 1]) await until(`instance ${i} to sell sale ${id}`, async () => (await request(base(i), "GET", "/status")).body.sale_id === id)
  return id
}

async function buy(i: number, user: string, item: number) {
  const held = await request(base(i), "POST", `/checkout?user_id=${user}&id=${item}`)
  expect(held.status).toBe(200)
  expect((await request(base(i), "POST", `/purchase?code=${held.body.code}`)).status).toBe(200)
}

/** `n` checkouts of new users, 20 at a time, alternating between the instances: the answers' statuses and errors. */
async function flood(n: number, item: (k: number) => number, prefix: string): Promise<Record<string, number>> {
  const answers: Record<string, number> = {}
  for (let k = 0; k < n; k += 20) {
    const replies = await Promise.all(Array.from({ length: Math.min(20, n - k) }, (_, j) => request(base(k + j), "POST", `/checkout?user_id=${prefix}${k + j}&id=${item(k + j)}`)))
    for (const r of replies) answers[`${r.status} ${r.body.error ?? "ok"}`] = (answers[`${r.status} ${r.body.error ?? "ok"}`] ?? 0) + 1
  }
  return answers
}

test("a sold-out sale's flood is answered in process, counted once on every instance, kept once; a restock on the other instance sells again at once", async () => {
  const id = await plan("Sold out", [{ id: 1, name: "Lamp", image: "/l.jpg", stock: 2 }, { id: 2, name: "Vase", image: "/v.jpg", stock: 1 }])
  await buy(0, "ann", 1)
  await buy(1, "bob", 1)
  await buy(0, "cat", 2)
  const before = (await knownAnswers(0)) + (await knownAnswers(1))

  expect(await flood(400, (k) => 1 + (k % 2), "u")).toEqual({ "409 sold_out": 400 })
  // Redis is asked again at most once a second per process; the rest are answered by the process itself.
  expect((await knownAnswers(0)) + (await knownAnswers(1)) - before).toBeGreaterThan(300)
  // Every refusal counted once, whichever process answered it, and kept once.
  expect(await rejected(0)).toBe(400)
  expect(await rejected(1)).toBe(400)
  await until("the refusals to be kept", async () => (await kept(id, "sold_out")) === 400)
  expect(Number((await e.sql.unsafe(`select count(*) as n from checkout_attempts where sale_id = ${id}`))[0]!.n)).toBe(403)

  // A unit more, through the other instance: the next checkout holds it, on either.
  expect((await admin("PATCH", `/admin/sales/${id}`, { items: [{ id: 1, stock: 3 }] }, 1)).status).toBe(200)
  expect(await request(base(0), "POST", "/checkout?user_id=dan&id=1")).toMatchObject({ status: 200, body: { item: { id: 1 } } })
}, 60_000)

test("a sold item's flood is answered in process; a pause on the other instance is obeyed at once", async () => {
  const id = await plan("Item sold", [{ id: 1, name: "Lamp", image: "/l.jpg", stock: 1 }, { id: 2, name: "Vase", image: "/v.jpg", stock: 5 }])
  await buy(0, "ann", 1)
  const before = (await knownAnswers(0)) + (await knownAnswers(1))
  expect(await flood(200, () => 1, "w")).toEqual({ "409 item_sold": 200 })
  expect((await knownAnswers(0)) + (await knownAnswers(1)) - before).toBeGreaterThan(150)
  await until("the refusals to be kept", async () => (await kept(id, "item_sold")) === 200)
  expect(await rejected(1)).toBe(200)

  // sale_paused comes before item_sold: the process's memory of the item gives way at once.
  expect((await admin("POST", `/admin/sales/${id}/pause`, undefined, 1)).status).toBe(200)
  expect(await request(base(0), "POST", "/checkout?user_id=zed&id=1")).toMatchObject({ status: 409, body: { error: "sale_paused" } })
  expect(await request(base(0), "POST", "/checkout?user_id=zed&id=2")).toMatchObject({ status: 409, body: { error: "sale_paused" } })
}, 60_000)
