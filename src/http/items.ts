/**
 * The storefront's read: GET /items (paged) and GET /items/{id}, from the engine's in-memory snapshot (at most a
 * second old), never a Redis or database call per request. Each page's ETag is a hash of its body, so equal on
 * every instance that holds the same snapshot; If-None-Match gets 304. Rendered pages are kept per snapshot.
 */
import type { Engine, Shelf } from "../sale/engine"
import { fail, json } from "./respond"

const maxLimit = 1000
const defaultLimit = 100

type Page = { body: string; etag: string }

/** A whole number from a query parameter, or the default when absent; undefined when malformed. */
function whole(value: string | null, fallback: number, max: number): number | undefined {
  if (value === null || value === "") return fallback
  if (!/^\d{1,9}$/.test(value)) return undefined
  const n = Number(value)
  return n <= max ? n : undefined
}

export function storefront(engine: Engine) {
  let cachedFor: string | undefined
  const pages = new Map<string, Page>()

  function render(shelf: Shelf, key: string, make: () => unknown): Page {
    if (cachedFor !== shelf.version) {
      pages.clear()
      cachedFor = shelf.version
    }
    let page = pages.get(key)
    if (!page) {
      const body = JSON.stringify(make())
      page = { body, etag: `"${Bun.hash(body).toString(36)}"` }
      if (pages.size > 1000) pages.clear()
      pages.set(key, page)
    }
    return page
  }

  function answer(request: Request, page: Page): Response {
    const headers = { ...json, etag: page.etag, "cache-control": "public, max-age=1" }
    const wanted = request.headers.get("if-none-match")
    if (wanted && wanted.split(",").some((tag) => tag.trim().replace(/^W\//, "") === page.etag)) return new Response(null, { status: 304, headers: { etag: page.etag, "cache-control": headers["cache-control"] } })
    return new Response(page.body, { headers })
  }

  return {
    async list(request: Request): Promise<Response> {
      const query = new URL(request.url, "http://localhost").searchParams
      const offset = whole(query.get("offset"), 0, 1_000_000_000)
      const limit = whole(query.get("limit"), defaultLimit, maxLimit)
      if (offset === undefined) return fail("invalid_request", "offset must be a whole number of 0 or more")
      if (limit === undefined || limit === 0) return fail("invalid_request", `limit must be a whole number from 1 to ${maxLimit}`)
      const shelf = await engine.shelf()
      const page = render(shelf, `${offset}/${limit}`, () => {
        const items = []
        for (let p = offset; p < Math.min(shelf.size, offset + limit); p++) items.push(shelf.at(p))
        return { sale_id: shelf.saleId, total: shelf.size, offset, limit, items }
      })
      return answer(request, page)
    },
    async one(request: Request, rawId: string): Promise<Response> {
      const id = /^(item)?\d{1,9}$/.test(rawId) ? Number(rawId.replace(/^item/, "")) : NaN
      if (!Number.isInteger(id)) return fail("invalid_request", "id must be an item id: 1 to 9 decimal digits, optionally written item42")
      const shelf = await engine.shelf()
      const position = shelf.position(id)
      if (position < 0) return fail("unknown_item", shelf.saleId === null ? "No sale is planned." : `Sale ${shelf.saleId} has no item ${id}.`)
      return answer(request, render(shelf, `item/${id}`, () => ({ sale_id: shelf.saleId, ...shelf.at(position) })))
    },
  }
}
