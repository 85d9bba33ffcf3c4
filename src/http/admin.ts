/**
 * The operator API under /admin: bearer-token access, and the handlers of its routes (http/routes.ts). The token
 * is compared in constant time and never printed or served; without ADMIN_TOKEN every /admin path is 404; a
 * request without the token, or with another, is 401 and changes nothing; an address that keeps failing is
 * refused 429 before its token is even looked at. Every change is kept, with the action, before it is answered.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import type { Config } from "../config"
import { parseNewSale, parseSaleChange } from "../sale/admin"
import { Refusal } from "../sale/stores"
import type { Engine } from "../sale/engine"
import { fail, json } from "./respond"
import { clientAddress, type Peer } from "./ratelimit"
import { requestLimits } from "./edge"
import { parameterRules } from "./docs"
import type { KeptUnit } from "../sale/definitions"
import type { Sale } from "../sale/sales"

/** Failed attempts an address may make in a window before it is refused without a look at its token. */
const maxFailures = 10
const failureWindowMs = 60_000
const trackedAddresses = 10_000

const digest = (text: string) => createHash("sha256").update(text).digest()

export function adminAccess(token: string | undefined, trustProxyHops: number, now = Date.now) {
  const expected = token === undefined ? undefined : digest(token)
  const failures = new Map<string, { count: number; until: number }>()

  return {
    enabled: expected !== undefined,
    /** undefined if the request may go on; else the answer (404 off, 429 too many failures, 401). */
    check(request: Request, server: Peer): Response | undefined {
      if (!expected) return fail("not_found")
      const address = clientAddress(request, server, trustProxyHops) ?? "unknown"
      const at = now()
      const record = failures.get(address)
      if (record && record.until > at && record.count >= maxFailures) {
        const seconds = Math.ceil((record.until - at) / 1000)
        return fail("rate_limited", `Too many failed attempts from this address; try again in ${seconds} s.`, { "retry-after": String(seconds) })
      }
      const header = request.headers.get("authorization") ?? ""
      const given = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1]
      // Compared as digests, so that neither the length nor the content of the token leaks through the time taken.
      if (given !== undefined && timingSafeEqual(digest(given), expected)) return undefined
      if (!record || record.until <= at) {
        if (failures.size >= trackedAddresses) for (const [key, r] of failures) if (r.until <= at || failures.size >= trackedAddresses) failures.delete(key)
        failures.set(address, { count: 1, until: at + failureWindowMs })
      } else record.count++
      const challenge = given === undefined ? 'Bearer realm="flashsale admin"' : 'Bearer realm="flashsale admin", error="invalid_token"'
      return fail("unauthorized", given === undefined ? "This needs the operator's token: Authorization: Bearer <ADMIN_TOKEN>." : "The token is not the operator's.", { "www-authenticate": challenge })
    },
  }
}

/** One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break, its quotes doubled. */
const csvField = (value: string | number | null) => {
  const text = value === null ? "" : String(value)
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

/**
 * The orders as a byte stream, pulled batch by batch from the store's cursor as the client reads: only a
 * batch is in memory at a time. A failure of the store midway ends the stream early (the status is sent).
 */
function ordersStream(sale: Sale, batches: AsyncIterable<KeptUnit[]>, format: "csv" | "jsonl"): ReadableStream<Uint8Array> {
  const rows = batches[Symbol.asyncIterator]()
  const encoder = new TextEncoder()
  let started = false
  const describe = (u: KeptUnit) => {
    const position = sale.items.position(u.itemId)
    const item = position >= 0 ? sale.items.at(position) : undefined
    return { sale_id: sale.id, item_id: u.itemId, unit: u.unit, name: item?.name ?? null, price: item?.price ?? null, user_id: u.userId, code: u.code, purchased_at: new Date(u.at).toISOString() }
  }
  return new ReadableStream({
    async pull(controller) {
      if (!started && format === "csv") {
        started = true
        controller.enqueue(encoder.encode("sale_id,item_id,unit,name,price,user_id,code,purchased_at\r\n"))
        return
      }
      started = true
      const { value, done } = await rows.next()
      if (done) return controller.close()
      let text = ""
      for (const u of value) {
        const o = describe(u)
        text += format === "csv" ? `${[o.sale_id, o.item_id, o.unit, o.name, o.price, o.user_id, o.code, o.purchased_at].map(csvField).join(",")}\r\n` : `${JSON.stringify(o)}\n`
      }
      controller.enqueue(encoder.encode(text))
    },
    async cancel() {
      await rows.return?.()
    },
  })
}

/** A request body as JSON, up to the operator API's limit; a Response when it cannot be read. */
async function jsonBody(request: Request): Promise<unknown | Response> {
  const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase()
  if (type !== "application/json" && !type.endsWith("+json")) return fail("invalid_request", "The body must be JSON (Content-Type: application/json).")
  const text = await request.text()
  if (text.length > requestLimits.adminBodyBytes) return fail("body_too_large", `The body is larger than ${requestLimits.adminBodyBytes} bytes.`)
  try {
    return JSON.parse(text)
  } catch {
    return fail("invalid_request", "The body is not valid JSON.")
  }
}

const answer = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: json })

/** A sale id from the path: a whole number, or 404 (no such sale). */
function saleIdOf(raw: string | undefined): number | Response {
  return raw && /^\d{1,16}$/.test(raw) ? Number(raw) : fail("not_found", `There is no sale ${raw}.`)
}

export type AdminDeps = { engine: Engine; config: Pick<Config, "userLimit" | "holdSeconds" | "trustProxyHops">; server?: Peer }
type Context = { request: Request; server: Peer; params: Record<string, string> }

/** The handlers of the /admin routes; each runs after adminAccess let the request through. */
export function adminHandlers({ engine, config }: AdminDeps) {
  const client = (request: Request, server: Peer) => clientAddress(request, server, config.trustProxyHops) ?? null
  const defaults = { userLimit: config.userLimit, holdMs: config.holdSeconds * 1000 }
  /** Runs an operator call; a Refusal becomes its 4xx answer. */
  const run = async (work: () => Promise<Response>): Promise<Response> => {
    try {
      return await work()
    } catch (error) {
      if (error instanceof Refusal) return fail(error.code, error.message, undefined, error.extra)
      throw error
    }
  }
  const withSale = (params: Record<string, string>, work: (id: number) => Promise<Response>) => {
    const id = saleIdOf(params.id)
    return id instanceof Response ? id : run(() => work(id))
  }
  return {
    list: () => run(async () => answer({ sales: await engine.operator.list() })),
    create: ({ request, server }: Context) =>
      run(async () => {
        const body = await jsonBody(request)
        if (body instanceof Response) return body
        return answer(await engine.operator.create((now) => parseNewSale(body, defaults, now), client(request, server)), 201)
      }),
    get: ({ params }: Context) => withSale(params, async (id) => answer(await engine.operator.get(id))),
    change: ({ request, server, params }: Context) =>
      withSale(params, async (id) => {
        const body = await jsonBody(request)
        if (body instanceof Response) return body
        return answer(await engine.operator.change(id, (sale, now) => parseSaleChange(body, sale, now), client(request, server)))
      }),
    remove: ({ request, server, params }: Context) =>
      withSale(params, async (id) => {
        await engine.operator.remove(id, client(request, server))
        return answer({ message: "deleted", id })
      }),
    control: (what: "pause" | "resume" | "end") => ({ request, server, params }: Context) => withSale(params, async (id) => answer(await engine.operator.control(id, what, client(request, server)))),
    releaseHold: ({ request, server, params }: Context) =>
      run(async () => {
        const code = params.code ?? ""
        if (!parameterRules.code.pattern.test(code)) return fail("invalid_request", parameterRules.code.message)
        return answer(await engine.operator.releaseHold(code, client(request, server)))
      }),
    user: ({ request, params }: Context) =>
      run(async () => {
        const userId = params.user_id ?? ""
        if (!parameterRules.user_id.pattern.test(userId)) return fail("invalid_request", parameterRules.user_id.message)
        const raw = new URL(request.url, "http://localhost").searchParams.get("sale_id")
        if (raw !== null && !/^\d{1,16}$/.test(raw)) return fail("invalid_request", "sale_id must be a sale's id.")
        return answer(await engine.operator.user(userId, raw === null ? undefined : Number(raw)))
      }),
    orders: ({ request, server, params }: Context) =>
      withSale(params, async (id) => {
        const format = new URL(request.url, "http://localhost").searchParams.get("format") ?? "csv"
        if (format !== "csv" && format !== "jsonl") return fail("invalid_request", "format must be csv or jsonl.")
        const { sale, batches } = await engine.operator.orders(id, format, client(request, server))
        const headers =
          format === "csv"
            ? { "content-type": "text/csv; charset=utf-8", "content-disposition": `attachment; filename="sale-${sale.id}-orders.csv"` }
            : { "content-type": "application/x-ndjson; charset=utf-8", "content-disposition": `attachment; filename="sale-${sale.id}-orders.jsonl"` }
        return new Response(ordersStream(sale, batches, format), { headers: { ...headers, "cache-control": "no-store" } })
      }),
    report: ({ params }: Context) => withSale(params, async (id) => answer(await engine.operator.report(id))),
    audit: ({ request, server, params }: Context) => withSale(params, async (id) => answer(await engine.operator.audit(id, client(request, server)))),
    actions: ({ request }: Context) =>
      run(async () => {
        const query = new URL(request.url, "http://localhost").searchParams
        const limit = Math.min(1000, Math.max(1, Number(query.get("limit") ?? 100) || 100))
        const before = query.get("before") ? Number(query.get("before")) : undefined
        const saleId = query.get("sale_id") ? Number(query.get("sale_id")) : undefined
        const rows = await engine.operator.actions({ before, saleId, limit })
        return answer({ actions: rows.map((a) => ({ id: a.id, at: new Date(a.at).toISOString(), action: a.action, sale_id: a.saleId, details: a.details, client: a.client })) })
      }),
  }
}
