/**
 * What the app checks of every request before routing it: its size, and its path in the form a proxy
 * in front would see it. Both run on the hot path, so each starts with a cheap test that almost every
 * request passes.
 */
import { fail } from "./respond"

/** The limits, in bytes. The runtime's own limit on a request's head is set from `headBytes` (main.ts). */
export const requestLimits = {
  /** Path plus query: ours are under 200 bytes; a longer one is 414 url_too_long. */
  urlBytes: 8 * 1024,
  /** A body above this is 413 body_too_large (declared, or counted as it is read): checkout and purchase parameters. */
  bodyBytes: 64 * 1024,
  /** The operator API's bodies: a planned sale of 100,000 items. */
  adminBodyBytes: 32 * 1024 * 1024,
  /** Request line plus headers, as the runtime reads them; past it the runtime answers a bare 431. */
  headBytes: 128 * 1024,
}

/** Where the path starts in `request.url` (after `http://host:port`). */
const pathStart = (url: string) => {
  const scheme = url.indexOf("//")
  const at = url.indexOf("/", scheme < 0 ? 0 : scheme + 2)
  return at < 0 ? url.length : at
}

/**
 * The path of `request.url`, read as text: never `new URL()`, which throws on what Bun builds from a bad Host
 * (`Host: x:99999`) or a CONNECT target, and turned refusals into 500s.
 */
export function pathOf(url: string): string {
  const start = pathStart(url)
  const end = url.slice(start).search(/[?#]/)
  return (end < 0 ? url.slice(start) : url.slice(start, start + end)) || "/"
}

/** The refusal of a request too large to serve, or undefined. */
export function oversized(request: Request): Response | undefined {
  const url = request.url
  if (url.length - pathStart(url) > requestLimits.urlBytes) return fail("url_too_long", `The path and query are longer than ${requestLimits.urlBytes} bytes.`)
  const length = request.headers.get("content-length")
  if (length === null) return undefined
  const limit = url.startsWith("/admin", pathStart(url)) ? requestLimits.adminBodyBytes : requestLimits.bodyBytes
  if (Number(length) > limit) return fail("body_too_large", `The body is larger than ${limit} bytes.`)
  return undefined
}

const unreserved = /%(?:4[1-9a-f]|5[0-9a]|6[1-9a-f]|7[0-9a]|3[0-9]|2d|2e|5f|7e)/gi

/**
 * The request's URL with its path normalised, or undefined if it is already normal: percent-encoded
 * unreserved characters decoded (`/%63heckout`), runs of slashes merged (`//checkout`) and dot segments
 * resolved (`/swagger/../checkout`, `%2e%2e` included), as RFC 3986 and nginx do. The query is untouched.
 */
export function normalisedUrl(url: string): string | undefined {
  const start = pathStart(url)
  const query = url.indexOf("?", start)
  // The common case, without making a string: nothing in the path to normalise.
  const end = query < 0 ? url.length : query
  const within = (at: number) => at >= 0 && at < end
  const fragment = url.indexOf("#", start)
  if (!within(url.indexOf("%", start)) && !within(url.indexOf("/.", start)) && !within(url.indexOf("//", start)) && fragment < 0) return undefined
  // A fragment is never part of a request target: dropped, as a client would, with whatever follows it.
  const path = url.slice(start, fragment >= 0 && fragment < end ? fragment : end)
  const rest = fragment < 0 ? (query < 0 ? "" : url.slice(query)) : fragment < end ? "" : url.slice(query, fragment)
  const decoded = path.replace(unreserved, (escape) => String.fromCharCode(parseInt(escape.slice(1), 16)))
  const segments: string[] = []
  const parts = decoded.split("/")
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i]!
    const last = i === parts.length - 1
    if (part === "..") segments.pop()
    else if (part !== "." && (part !== "" || last)) segments.push(part)
    if (last && (part === "." || part === "..")) segments.push("")
  }
  const normal = `/${segments.join("/")}`
  const normalUrl = url.slice(0, start) + normal + rest
  return normalUrl === url ? undefined : normalUrl
}
