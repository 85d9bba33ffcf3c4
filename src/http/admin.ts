/**
 * The operator API under /admin: bearer-token access, and the handlers of its routes (http/routes.ts). The token
 * is compared in constant time and never printed or served; without ADMIN_TOKEN every /admin path is 404; a
 * request without the token, or with another, is 401 and changes nothing; an address that keeps failing is
 * refused 429 before its token is even looked at. Every change is kept, with the action, before it is answered.
 */
import { createHash, timingSafeEqual } from "node:crypto"
import type { Config } from "../config"
import { parseNewSale, parseSaleChange } from "../sale/admin"
import { Refusal } from "../sale/operator"
import type { Engine } from "../sale/engine"
import { fail, json } from "./respond"
import { clientAddress, type Peer } from "./ratelimit"
import { requestLimits } from "./edge"

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
