/** createApp(deps): the HTTP API over any sale engine: routes, validation, error mapping and the OpenAPI document. */
import { Elysia, t, type TSchema } from "elysia"
import { Type as T } from "@sinclair/typebox"
import { openapi } from "@elysiajs/openapi"
import scalarBundle from "../node_modules/@scalar/api-reference/dist/browser/standalone.js" with { type: "file" }
import type { Config } from "./config"
import { codeToStatus, errorBody, UnavailableError, type ErrorCode } from "./errors"
import type { Engine } from "./sale/engine"
import { itemOf } from "./sale/catalog"
import { codePattern } from "./sale/codes"
import { saleEndMs, saleStartMs } from "./sale/clock"

export type AppDeps = {
  engine: Engine
  config: Pick<Config, "saleItems" | "salePeriodSeconds">
  log?: (message: string) => void
}

const json = { "content-type": "application/json" }

/** The error bodies with their default messages, serialised once: most answers in a rush are these. */
const defaultBodies = Object.fromEntries(Object.keys(codeToStatus).map((code) => [code, JSON.stringify(errorBody(code as ErrorCode))])) as Record<ErrorCode, string>

function fail(code: ErrorCode, message?: string, headers?: Record<string, string>): Response {
  const body = message === undefined ? defaultBodies[code] : JSON.stringify(errorBody(code, message))
  return new Response(body, { status: codeToStatus[code], headers: headers ? { ...json, ...headers } : json })
}

const iso = (ms: number) => new Date(ms).toISOString()

/** The first query parameter among names that appears more than once: which value was meant is ambiguous. */
function repeatedParameter(url: string, names: string[]): string | undefined {
  const query = url.indexOf("?")
  if (query < 0) return undefined
  const seen = new Set<string>()
  for (const pair of url.slice(query + 1).split("&")) {
    const name = pair.slice(0, (pair.indexOf("=") + 1 || pair.length + 1) - 1)
    if (!names.includes(name)) continue
    if (seen.has(name)) return name
    seen.add(name)
  }
  return undefined
}

const rejectRepeated = (names: string[]) => ({ request }: { request: Request }) => {
  const name = repeatedParameter(request.url, names)
  if (name) return fail("invalid_request", `${name} must be given once`)
}

const userIdPattern = "^[A-Za-z0-9_.:@-]{1,64}$"
const itemIdPattern = "^(item)?[0-9]{1,9}$"

const queries = {
  checkout: t.Object({
    user_id: t.String({ pattern: userIdPattern, error: "user_id must be 1 to 64 characters from A-Z a-z 0-9 _ . : @ -", description: "Who checks out." }),
    id: t.String({ pattern: itemIdPattern, error: "id must be an item id: 1 to 9 decimal digits, optionally written item42", description: "Item id, 42 or item42." }),
  }),
  purchase: t.Object({
    code: t.String({ pattern: codePattern, error: "code must be a code returned by /checkout", description: "The code from a successful checkout." }),
  }),
}

// Response shapes, for the OpenAPI document only: responses are built by the handlers below, not validated at run time.
const ItemSchema = T.Object({ id: T.Integer(), name: T.String(), image: T.String({ format: "uri" }) })
const schemas = {
  checkout: T.Object({ message: T.Literal("success"), code: T.String(), sale_id: T.Integer(), item: ItemSchema, expires_at: T.String({ format: "date-time" }) }),
  purchase: T.Object({ message: T.Literal("success"), sale_id: T.Integer(), user_id: T.String(), item: ItemSchema, purchased_at: T.String({ format: "date-time" }) }),
  status: T.Object({
    sale_id: T.Integer(),
    started_at: T.String({ format: "date-time" }),
    ends_at: T.String({ format: "date-time" }),
    seconds_remaining: T.Integer(),
    items_total: T.Integer(),
    items_sold: T.Integer(),
    items_reserved: T.Integer(),
    items_available: T.Integer(),
    checkouts: T.Object({ accepted: T.Integer(), rejected: T.Integer() }),
    purchases: T.Object({ accepted: T.Integer(), rejected: T.Integer() }),
    sale_status: T.Union([T.Literal("active"), T.Literal("sold_out")]),
  }),
  health: T.Object({ status: T.Union([T.Literal("ok"), T.Literal("degraded"), T.Literal("down")]), checks: T.Record(T.String(), T.Unknown()) }),
}

/** An OpenAPI responses object: the success schema, then one entry per status listing its error codes. */
function responses(ok: TSchema, okDescription: string, errors: ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of errors) byStatus.set(codeToStatus[code], [...(byStatus.get(codeToStatus[code]) ?? []), code])
  const result: Record<string, unknown> = { 200: { description: okDescription, content: { "application/json": { schema: ok } } } }
  for (const [status, codes] of byStatus) {
    result[status] = {
      description: codes.map((c) => `\`${c}\``).join(", "),
      content: { "application/json": { schema: { type: "object", required: ["error", "message"], properties: { error: { type: "string", enum: codes }, message: { type: "string" } } } } },
    }
  }
  return result
}

/** Known paths and their methods: any other method on them is a 405. */
const allowed: Record<string, string> = {
  "/checkout": "POST",
  "/purchase": "POST",
  "/status": "GET, HEAD",
  "/health": "GET, HEAD",
  "/swagger": "GET, HEAD",
  "/swagger/json": "GET, HEAD",
  "/swagger/scalar.js": "GET, HEAD",
}

export function createApp({ engine, config, log = console.error }: AppDeps) {
  const periodMs = config.salePeriodSeconds * 1000

  return new Elysia()
    .onError(({ code, error, request }) => {
      if (code === "VALIDATION") {
        const first = (error as { all?: { summary?: string; path?: string }[] }).all?.[0]
        const message = typeof (error as Error).message === "string" && !(error as Error).message.startsWith("{") ? (error as Error).message : `${first?.path ?? "a parameter"}: ${first?.summary ?? "is invalid"}`
        return fail("invalid_request", message)
      }
      if (code === "PARSE") return fail("invalid_request", "The request could not be parsed.")
      if (code === "NOT_FOUND") {
        const path = new URL(request.url).pathname
        const allow = allowed[path]
        return allow ? fail("method_not_allowed", `${path} accepts ${allow}.`, { allow }) : fail("not_found")
      }
      if (error instanceof UnavailableError) {
        log(`unavailable: ${error.message}`)
        return fail("unavailable", undefined, { "retry-after": String(error.retryAfterSeconds) })
      }
      log(`internal error on ${request.method} ${new URL(request.url).pathname}: ${(error as Error)?.stack ?? String(error)}`)
      return fail("internal")
    })
    .use(
      openapi({
        path: "/swagger",
        specPath: "/swagger/json",
        exclude: { paths: ["/swagger/scalar.js"] },
        documentation: {
          info: {
            title: "Flash sale",
            version: "1.0.0",
            description:
              "Sells a fixed stock in a burst of demand. Every period a new sale opens; users check an item out (it is held for them and they get a code), then buy it with the code. " +
              'Every error body is {"error": "<code>", "message": "<sentence>"} with one status per code.',
          },
        },
        scalar: { cdn: "/swagger/scalar.js", withDefaultFonts: false, hideClientButton: true } as never,
      }),
    )
    .get("/swagger/scalar.js", () => new Response(Bun.file(scalarBundle), { headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "public, max-age=86400" } }), { detail: { hide: true } })
    .post(
      "/checkout",
      async ({ query }) => {
        const itemId = Number(query.id.startsWith("item") ? query.id.slice(4) : query.id)
        const result = await engine.checkout(query.user_id, itemId)
        if (!result.ok) return fail(result.error)
        return { message: "success" as const, code: result.code, sale_id: result.saleId, item: itemOf(result.saleId, itemId), expires_at: iso(result.expiresAt) }
      },
      {
        query: queries.checkout,
        beforeHandle: rejectRepeated(["user_id", "id"]),
        detail: {
          summary: "Hold an item",
          description: "Holds the item for the user for HOLD_SECONDS and returns a code to buy it with. Checking out the same item again while the hold is live returns the same code and does not count again.",
          responses: responses(schemas.checkout, "The item is held for this user.", ["invalid_request", "unknown_item", "sold_out", "item_sold", "item_reserved", "user_limit", "unavailable"]) as never,
        },
      },
    )
    .post(
      "/purchase",
      async ({ query }) => {
        const result = await engine.purchase(query.code)
        if (!result.ok) return fail(result.error)
        return { message: "success" as const, sale_id: result.saleId, user_id: result.userId, item: itemOf(result.saleId, result.itemId), purchased_at: iso(result.purchasedAt) }
      },
      {
        query: queries.purchase,
        beforeHandle: rejectRepeated(["code"]),
        detail: {
          summary: "Buy a held item",
          description: "Buys the item held under this code. A live hold always converts; a code sells at most once.",
          responses: responses(schemas.purchase, "The item is sold to the holder of the code.", ["invalid_request", "code_not_found", "code_used", "unavailable"]) as never,
        },
      },
    )
    .get(
      "/status",
      async () => {
        const s = await engine.status()
        const available = Math.max(0, config.saleItems - s.itemsSold - s.itemsReserved)
        return {
          sale_id: s.saleId,
          started_at: iso(saleStartMs(s.saleId, periodMs)),
          ends_at: iso(saleEndMs(s.saleId, periodMs)),
          seconds_remaining: Math.max(0, Math.ceil((saleEndMs(s.saleId, periodMs) - s.now) / 1000)),
          items_total: config.saleItems,
          items_sold: s.itemsSold,
          items_reserved: s.itemsReserved,
          items_available: available,
          checkouts: s.checkouts,
          purchases: s.purchases,
          sale_status: s.itemsSold >= config.saleItems ? ("sold_out" as const) : ("active" as const),
        }
      },
      { detail: { summary: "The current sale, counted across every instance", responses: responses(schemas.status, "The current sale.", ["unavailable"]) as never } },
    )
    .get(
      "/health",
      async () => {
        const h = await engine.health()
        return new Response(JSON.stringify(h), { status: h.status === "down" ? 503 : 200, headers: json })
      },
      {
        detail: {
          summary: "Whether this instance can sell",
          description: '200 "ok"; 200 "degraded" when it can sell but PostgreSQL is down or the ledger lags (see checks.ledger); 503 "down" when it cannot sell.',
          responses: { 200: { description: "Can sell (ok or degraded).", content: { "application/json": { schema: schemas.health } } }, 503: { description: "Cannot sell.", content: { "application/json": { schema: schemas.health } } } } as never,
        },
      },
    )
}

export type App = ReturnType<typeof createApp>
