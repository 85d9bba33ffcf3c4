/**
 * Every route the server answers, declared once: app.ts registers a handler for each (path, method), and a
 * wrong method on a known path gets 405 with the Allow this table gives; metrics label answers by `endpoint`;
 * docs.ts documents each operation (its key is required there); `cors` marks the storefront's endpoints.
 * A GET route answers HEAD too, unless `noHead`.
 */
export type Method = "GET" | "POST" | "PATCH" | "DELETE"

export type Route = {
  path: string
  methods: readonly Method[]
  endpoint: string
  /** Called from a shop's pages on another origin: CORS_ORIGINS applies. */
  cors?: boolean
  /** The operator API: bearer token, never CORS. */
  admin?: boolean
  /** GET only: HEAD would be a stream that never ends. */
  noHead?: boolean
}

export const routes = [
  { path: "/checkout", methods: ["POST"], endpoint: "checkout", cors: true },
  { path: "/purchase", methods: ["POST"], endpoint: "purchase", cors: true },
  { path: "/status", methods: ["GET"], endpoint: "status", cors: true },
  { path: "/items", methods: ["GET"], endpoint: "items", cors: true },
  { path: "/items/:id", methods: ["GET"], endpoint: "items", cors: true },
  { path: "/health", methods: ["GET"], endpoint: "health" },
  { path: "/metrics", methods: ["GET"], endpoint: "metrics" },
  { path: "/events", methods: ["GET"], endpoint: "events", cors: true, noHead: true },
  { path: "/", methods: ["GET"], endpoint: "page" },
  { path: "/swagger", methods: ["GET"], endpoint: "docs" },
  { path: "/swagger/json", methods: ["GET"], endpoint: "docs" },
  { path: "/swagger/scalar.js", methods: ["GET"], endpoint: "docs" },
  { path: "/admin/sales", methods: ["GET", "POST"], endpoint: "admin", admin: true },
  { path: "/admin/sales/:id", methods: ["GET", "PATCH", "DELETE"], endpoint: "admin", admin: true },
  { path: "/admin/sales/:id/pause", methods: ["POST"], endpoint: "admin", admin: true },
  { path: "/admin/sales/:id/resume", methods: ["POST"], endpoint: "admin", admin: true },
  { path: "/admin/sales/:id/end", methods: ["POST"], endpoint: "admin", admin: true },
  { path: "/admin/sales/:id/orders", methods: ["GET"], endpoint: "admin", admin: true },
  { path: "/admin/sales/:id/report", methods: ["GET"], endpoint: "admin", admin: true },
  { path: "/admin/sales/:id/audit", methods: ["POST"], endpoint: "admin", admin: true },
  { path: "/admin/holds/:code", methods: ["DELETE"], endpoint: "admin", admin: true },
  { path: "/admin/users/:user_id", methods: ["GET"], endpoint: "admin", admin: true },
  { path: "/admin/actions", methods: ["GET"], endpoint: "admin", admin: true },
] as const satisfies readonly Route[]

type Declared = (typeof routes)[number]
/** "POST /checkout", "GET /status", ...: one per declared path and method. */
export type RouteKey = Declared extends infer R ? (R extends { path: infer P extends string; methods: readonly (infer M extends string)[] } ? `${M} ${P}` : never) : never

/** The endpoint labels of /metrics: one per route's endpoint, and `other` for every unknown path. */
export const endpoints = [...new Set(routes.map((r) => r.endpoint)), "other"] as const
export type Endpoint = Declared["endpoint"] | "other"

type Compiled = { route: Route; exact?: string; pattern?: RegExp }
const compiled: Compiled[] = routes.map((route: Route) =>
  route.path.includes(":") ? { route, pattern: new RegExp(`^${route.path.replace(/:[a-z_]+/g, "[^/]+")}$`) } : { route, exact: route.path },
)
const byPath = new Map<string, Route>(compiled.filter((c) => c.exact !== undefined).map((c) => [c.exact!, c.route]))

/** The route a normalised path names (a trailing slash ignored), or undefined. */
export function routeOf(path: string): Route | undefined {
  const bare = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path
  const exact = byPath.get(bare)
  if (exact) return exact
  for (const c of compiled) if (c.pattern?.test(bare)) return c.route
  return undefined
}

/** What the Allow header of a route says. */
export const allowOf = (route: Route) => route.methods.flatMap((m) => (m === "GET" && !route.noHead ? ["GET", "HEAD"] : [m])).join(", ")

/** The metrics label of a path: its route's endpoint, or `other`. */
export const endpointOf = (path: string): Endpoint => (routeOf(path)?.endpoint as Endpoint | undefined) ?? "other"
