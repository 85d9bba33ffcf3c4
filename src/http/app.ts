/** createApp(deps): the HTTP API over any sale engine: routes, validation and error mapping (documented by http/docs.ts). */
import { Elysia, t } from "elysia"
import scalarBundle from "../../node_modules/@scalar/api-reference/dist/browser/standalone.js" with { type: "file" }
import type { Config } from "../config"
import { requestErrorOf } from "../errors"
import { safeDecode } from "../redact"
import { metrics as processMetrics, type Endpoint, type Metrics, type RequestOutcome } from "../metrics"
import { generatedCatalog, type Catalog } from "../sale/catalog"
import { codePattern } from "../sale/codes"
import { UnavailableError, type Engine } from "../sale/engine"
import { docs, healthResponses, responses, schemas } from "./docs"
import { operability } from "./operability"
import { normalisedUrl, oversized, pathOf } from "./edge"
import { admission, samePeer, type Limits } from "./ratelimit"
import { fail, iso, json } from "./respond"
import { statusBody } from "./status"

export type AppDeps = {
  engine: Engine
  /** Without the rate limits (as in the tests), admission control is off. */
  config: Pick<Config, "saleItems" | "salePeriodSeconds"> & Partial<Limits>
  log?: (message: string) => void
  /** The items' names and images; the generated ones by default. */
  catalog?: Catalog
  /** Where answers are counted; the process's series by default. */
  metrics?: Metrics
}

type ErrorContext = { code: string | number; error: unknown; request: Request }
type Refusal = (context: { request: Request }) => Response | undefined

/**
 * performance.now() at each request's arrival, set by the onRequest hook. Kept beside the request, not on
 * Elysia's context: a hook or handler that hands its whole context to a function makes Elysia build every
 * part of it (headers, cookies, body) for every request, which cost more than the rest of the app together.
 */
const arrivals = new WeakMap<Request, number>()
const startedAt = (request: Request) => arrivals.get(request)

/** The endpoint a path names, for answers that come from onError (validation, 404, 405, 503, 500). */
function endpointOf(url: string): Endpoint {
  const path = pathOf(url)
  if (path === "/") return "page"
  return ["/checkout", "/purchase", "/status", "/health", "/metrics", "/events"].includes(path) ? (path.slice(1) as Endpoint) : "other"
}

/**
 * The first query parameter among names that appears more than once, in any spelling (`user%5Fid` is
 * `user_id`): which value was meant is ambiguous. Names are compared as the query parser reads them, decoded.
 */
function repeatedParameter(url: string, names: string[]): string | undefined {
  const query = url.indexOf("?")
  if (query < 0) return undefined
  let seen: string[] | undefined
  for (const pair of url.slice(query + 1).split("&")) {
    const raw = pair.slice(0, (pair.indexOf("=") + 1 || pair.length + 1) - 1)
    const name = raw.includes("%") || raw.includes("+") ? safeDecode(raw) : raw
    if (!names.includes(name)) continue
    if (seen?.includes(name)) return name
    ;(seen ??= []).push(name)
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

/** Known paths and their methods: any other method on them is a 405. */
const allowed: Record<string, string> = {
  "/checkout": "POST",
  "/purchase": "POST",
  "/status": "GET, HEAD",
  "/health": "GET, HEAD",
  "/swagger": "GET, HEAD",
  "/swagger/json": "GET, HEAD",
  "/swagger/scalar.js": "GET, HEAD",
  "/": "GET, HEAD",
  "/events": "GET",
  "/metrics": "GET, HEAD",
}

export function createApp({ engine, config, log = console.error, catalog = generatedCatalog, metrics = processMetrics }: AppDeps) {
  const limits = admission(config, metrics)
  const ops = operability({ engine, config, metrics, admission: limits, startedAt })
  const count = (endpoint: Endpoint, outcome: RequestOutcome, request: Request) => metrics.request(endpoint, outcome, startedAt(request))
  /** Counts what an onError handler answers, by the request-level code of its status. */
  const counted = (handler: (context: ErrorContext) => Response) => ({ code, error, request }: ErrorContext) => {
    const response = handler({ code, error, request })
    count(endpointOf(request.url), requestErrorOf(response.status) ?? "internal", request)
    return response
  }
  /** Counts the answer of a beforeHandle hook that refuses the request (its status names a request-level code). */
  const countedRefusal = (endpoint: Endpoint, hook: Refusal) => ({ request }: { request: Request }) => {
    const response = hook({ request })
    if (response) count(endpoint, requestErrorOf(response.status) ?? "internal", request)
    return response
  }

  /** The app's own handler, for a request it serves under its normalised path (set once the app exists). */
  let dispatch: (request: Request) => Promise<Response> = () => Promise.reject(new Error("the app is not built yet"))
  // Routed by Elysia, not by Bun's native router: that one matches the raw path, so /swagger/../checkout
  // missed /checkout and fell through to a 404 or a wrong 405, and a request the app re-dispatches under its
  // normalised path could not reach a route at all. standardHostname off: Elysia otherwise looks for the path
  // from the 12th character of the URL, and a short Host (`Host: a`) made every path a 404.
  const app = new Elysia({ systemRouter: false, handler: { standardHostname: false } })
    .onRequest(({ request, server }) => {
      arrivals.set(request, performance.now())
      const refused = oversized(request)
      if (refused) return count(endpointOf(request.url), requestErrorOf(refused.status) ?? "internal", request), refused
      // Served as what the path means, as a proxy in front would route it: /swagger/../checkout is /checkout.
      const normal = normalisedUrl(request.url)
      if (normal === undefined) return
      let copy: Request
      try {
        copy = new Request(normal, { method: request.method, headers: request.headers })
      } catch {
        return count(endpointOf(request.url), "invalid_request", request), fail("invalid_request", "The request's Host or target is not a valid URL.")
      }
      samePeer(request, copy, server)
      return dispatch(copy)
    })
    .onError(counted(({ code, error, request }) => {
      if (code === "VALIDATION") {
        const first = (error as { all?: { summary?: string; path?: string }[] }).all?.[0]
        const message = typeof (error as Error).message === "string" && !(error as Error).message.startsWith("{") ? (error as Error).message : `${first?.path ?? "a parameter"}: ${first?.summary ?? "is invalid"}`
        return fail("invalid_request", message)
      }
      if (code === "PARSE") return fail("invalid_request", "The request could not be parsed.")
      if (code === "NOT_FOUND") {
        const path = pathOf(request.url).replace(/(.)\/$/, "$1")
        const allow = allowed[path]
        return allow ? fail("method_not_allowed", `${path} accepts ${allow}.`, { allow }) : fail("not_found")
      }
      if (error instanceof UnavailableError) {
        log(`unavailable: ${error.message}`)
        return fail("unavailable", undefined, { "retry-after": String(error.retryAfterSeconds) })
      }
      log(`internal error on ${request.method} ${pathOf(request.url)}: ${(error as Error)?.stack ?? String(error)}`)
      return fail("internal")
    }))
    .use(docs("/swagger/scalar.js"))
    .get("/swagger/scalar.js", () => new Response(Bun.file(scalarBundle), { headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "public, max-age=86400" } }), { detail: { hide: true } })
    .post(
      "/checkout",
      async ({ query, request, server }) => {
        const refused = limits.checkout(query.user_id, request, server)
        if (refused) return count("checkout", "rate_limited", request), refused
        const itemId = Number(query.id.startsWith("item") ? query.id.slice(4) : query.id)
        const result = await engine.checkout(query.user_id, itemId)
        count("checkout", result.ok ? (result.repeated ? "repeated" : "reserved") : result.error, request)
        if (!result.ok) return fail(result.error)
        return { message: "success" as const, code: result.code, sale_id: result.saleId, item: catalog.itemOf(result.saleId, itemId), expires_at: iso(result.expiresAt) }
      },
      {
        query: queries.checkout,
        beforeHandle: countedRefusal("checkout", rejectRepeated(["user_id", "id"])),
        detail: {
          summary: "Hold an item",
          description: "Holds the item for the user for HOLD_SECONDS and returns a code to buy it with. Checking out the same item again while the hold is live returns the same code and does not count again.",
          responses: responses(schemas.checkout, "The item is held for this user.", ["invalid_request", "unknown_item", "sold_out", "item_sold", "item_reserved", "user_limit", "rate_limited", "body_too_large", "url_too_long", "unavailable"]),
        },
      },
    )
    .post(
      "/purchase",
      async ({ query, request, server }) => {
        const refused = limits.purchase(query.code, request, server)
        if (refused) return count("purchase", "rate_limited", request), refused
        const result = await engine.purchase(query.code)
        count("purchase", result.ok ? "purchased" : result.error, request)
        if (!result.ok) return fail(result.error)
        return { message: "success" as const, sale_id: result.saleId, user_id: result.userId, item: catalog.itemOf(result.saleId, result.itemId), purchased_at: iso(result.purchasedAt) }
      },
      {
        query: queries.purchase,
        beforeHandle: countedRefusal("purchase", rejectRepeated(["code"])),
        detail: {
          summary: "Buy a held item",
          description: "Buys the item held under this code. A live hold always converts; a code sells at most once.",
          responses: responses(schemas.purchase, "The item is sold to the holder of the code.", ["invalid_request", "code_not_found", "code_used", "rate_limited", "body_too_large", "url_too_long", "unavailable"]),
        },
      },
    )
    .get(
      "/status",
      async ({ request }) => {
        const body = statusBody(await engine.status(), config)
        count("status", "ok", request)
        return body
      },
      { detail: { summary: "The current sale, counted across every instance", responses: responses(schemas.status, "The current sale.", ["unavailable"]) } },
    )
    .get(
      "/health",
      async ({ request }) => {
        const h = await engine.health()
        count("health", h.status, request)
        return new Response(JSON.stringify(h), { status: h.status === "down" ? 503 : 200, headers: json })
      },
      {
        detail: {
          summary: "Whether this instance can sell",
          description: '200 "ok"; 200 "degraded" when it can sell but PostgreSQL is down or the ledger lags (see checks.ledger); 503 "down" when it cannot sell.',
          responses: healthResponses,
        },
      },
    )
    .use(ops.plugin)
  dispatch = (request) => app.handle(request)
  /** Ends the live page's streams: call before the server's stop(), which waits for open responses. */
  return Object.assign(app, { closeWatchers: () => ops.feed.close() })
}

export type App = ReturnType<typeof createApp>
