/**
 * What a sale's items are called and look like: the shop's own catalog (parsed here from CATALOG_FILE's text),
 * or names and images generated deterministically from (saleId, itemId), so every instance and engine agrees.
 */

const adjectives = ["Amber", "Brisk", "Cobalt", "Dapper", "Electric", "Feather", "Golden", "Hidden", "Ivory", "Jade", "Kinetic", "Lunar", "Misty", "Nimble", "Onyx", "Polar", "Quiet", "Rustic", "Solar", "Tidal", "Urban", "Velvet", "Wild", "Zesty"]
const materials = ["Bamboo", "Canvas", "Ceramic", "Copper", "Cotton", "Denim", "Glass", "Granite", "Leather", "Linen", "Maple", "Oak", "Silk", "Steel", "Walnut", "Wool"]
const things = ["Backpack", "Bottle", "Candle", "Chair", "Clock", "Headphones", "Jacket", "Kettle", "Lamp", "Mug", "Notebook", "Pen", "Planter", "Scarf", "Sneakers", "Speaker", "Sunglasses", "Teapot", "Umbrella", "Wallet", "Watch"]

/** 32-bit integer mix (lowbias32): cheap, stable across runtimes. */
function mix(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0
  x = Math.imul(x, 0x7feb352d) >>> 0
  x = (x ^ (x >>> 15)) >>> 0
  x = Math.imul(x, 0x846ca68b) >>> 0
  return (x ^ (x >>> 16)) >>> 0
}

/** What a shopper sees of an item. */
export type Item = { id: number; name: string; image: string; price?: number }

/** An item as a sale sells it: its units (`stock`) and how many of them one user may buy (`perUser`). */
export type SaleItem = Item & { stock: number; perUser: number }

/** The bounds of an item's stock and per-user limit (a Lua score packs item and unit into a double: see lua/prelude.lua). */
export const maxStock = 1_000_000

/** The generated item: the same name and image for (saleId, itemId) on every instance. */
export function itemOf(saleId: number, itemId: number): Item {
  const h = mix(mix(saleId >>> 0) ^ mix((saleId / 2 ** 32) >>> 0) ^ itemId)
  const name = `${adjectives[h % adjectives.length]} ${materials[(h >>> 8) % materials.length]} ${things[(h >>> 16) % things.length]}`
  return { id: itemId, name, image: `https://picsum.photos/seed/flashsale-${saleId}-${itemId}/480/480` }
}

/**
 * The recurring sales' items: generated (ids 1..SALE_ITEMS, one unit each) or the shop's CATALOG_FILE (its ids
 * 1..N, with their stock and per-user limit). `size`: how many items the catalog fixes, if any.
 */
export type Catalog = { size: number | undefined; itemOf(saleId: number, itemId: number): SaleItem; uniform: boolean }

export const generatedCatalog: Catalog = { size: undefined, itemOf: (saleId, itemId) => ({ ...itemOf(saleId, itemId), stock: 1, perUser: 1 }), uniform: true }

/** The shop's items, the same in every sale; ids are 1..items.length (parseCatalog checks that). */
export function fixedCatalog(items: SaleItem[]): Catalog {
  const byId: SaleItem[] = []
  for (const item of items) byId[item.id] = item
  const first = items[0]
  const uniform = items.every((i) => i.stock === first?.stock && i.perUser === first?.perUser)
  return { size: items.length, itemOf: (_saleId, itemId) => byId[itemId] ?? { id: itemId, name: `Item ${itemId}`, image: "", stock: 1, perUser: 1 }, uniform }
}

/** A problem in a catalog's text, at a line (1-based). */
export class CatalogProblem extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message)
  }
}

const maxId = 1_000_000

/**
 * Parses a catalog: CSV with a header naming id, name, image (and optionally price, stock, per_user) in any
 * order, or JSON lines ({"id":1,"name":"…","image":"…","price":9.5,"stock":20,"per_user":2}) when the first
 * non-blank character is `{`. stock and per_user default to 1.
 * Blank lines are skipped. The ids must be 1..N, each once, where N is the number of items.
 */
export function parseCatalog(text: string): SaleItem[] {
  const lines = text.split("\n")
  const first = lines.findIndex((l) => l.trim() !== "")
  if (first < 0) throw new CatalogProblem(1, "the file is empty")
  const items = lines[first]!.trimStart().startsWith("{") ? jsonLines(lines) : csv(lines, first)
  if (items.length === 0) throw new CatalogProblem(first + 1, "only a header, no items")
  const seen = new Map<number, number>()
  for (const [line, item] of items) {
    const before = seen.get(item.id)
    if (before !== undefined) throw new CatalogProblem(line, `duplicate id ${item.id} (first on line ${before})`)
    seen.set(item.id, line)
  }
  for (const [line, item] of items) {
    if (item.id > items.length) throw new CatalogProblem(line, `id ${item.id} is beyond the ${items.length} items in the file: ids must be 1..${items.length}, each once`)
  }
  return items.map(([, item]) => item)
}

/** A whole number from `min` to `max`, from JSON or CSV; undefined when absent or empty. */
function count(line: number, id: number, name: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined || value === null || value === "") return undefined
  const n = typeof value === "number" ? value : typeof value === "string" && /^\s*\d{1,9}\s*$/.test(value) ? Number(value) : NaN
  if (!Number.isInteger(n) || n < min || n > max) throw new CatalogProblem(line, `item ${id}: ${name} ${JSON.stringify(value)} is not a whole number from ${min} to ${max}`)
  return n
}

function item(line: number, fields: { id: unknown; name: unknown; image: unknown; price?: unknown; stock?: unknown; per_user?: unknown }): SaleItem {
  const id = typeof fields.id === "number" ? fields.id : typeof fields.id === "string" && /^\s*\d{1,9}\s*$/.test(fields.id) ? Number(fields.id) : NaN
  if (!Number.isInteger(id) || id < 1 || id > maxId) throw new CatalogProblem(line, `id ${JSON.stringify(fields.id ?? "")} is not a whole number from 1 to ${maxId}`)
  const name = typeof fields.name === "string" ? fields.name.trim() : ""
  if (!name) throw new CatalogProblem(line, `item ${id} has no name`)
  const image = typeof fields.image === "string" ? fields.image.trim() : ""
  if (!/^(https?:\/\/[^\s]+|\/[^\s]*)$/.test(image)) throw new CatalogProblem(line, `item ${id}: image ${JSON.stringify(image)} is not an http(s) URL or a path starting with /`)
  const stock = count(line, id, "stock", fields.stock, 1, maxStock) ?? 1
  const perUser = count(line, id, "per_user", fields.per_user, 1, maxStock) ?? 1
  const result: SaleItem = { id, name, image, stock, perUser }
  const price = fields.price
  if (price !== undefined && price !== null && price !== "") {
    const n = typeof price === "number" ? price : typeof price === "string" && /^\s*\d+(\.\d+)?\s*$/.test(price) ? Number(price) : NaN
    if (!Number.isFinite(n) || n < 0) throw new CatalogProblem(line, `item ${id}: price ${JSON.stringify(price)} is not a number of 0 or more`)
    result.price = n
  }
  return result
}

function jsonLines(lines: string[]): [number, SaleItem][] {
  const items: [number, SaleItem][] = []
  lines.forEach((text, i) => {
    if (text.trim() === "") return
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (error) {
      throw new CatalogProblem(i + 1, `not valid JSON (${(error as Error).message})`)
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new CatalogProblem(i + 1, "expected an object with id, name and image")
    for (const key of ["id", "name", "image"]) if (!(key in value)) throw new CatalogProblem(i + 1, `missing "${key}"`)
    items.push([i + 1, item(i + 1, value as Record<"id" | "name" | "image", unknown>)])
  })
  return items
}

/** One CSV record: fields separated by commas, each optionally in double quotes ("" inside is a quote). */
function fieldsOf(text: string, line: number): string[] {
  if (!text.includes('"')) return text.split(",")
  const fields: string[] = []
  let i = 0
  for (;;) {
    if (text[i] === '"') {
      let value = ""
      for (i++; ; ) {
        const end = text.indexOf('"', i)
        if (end < 0) throw new CatalogProblem(line, "a quoted field is not closed (fields cannot span lines)")
        value += text.slice(i, end)
        if (text[end + 1] === '"') {
          value += '"'
          i = end + 2
        } else {
          i = end + 1
          break
        }
      }
      fields.push(value)
      if (i < text.length && text[i] !== ",") throw new CatalogProblem(line, "unexpected text after a closing quote")
    } else {
      const end = text.indexOf(",", i)
      fields.push(text.slice(i, end < 0 ? text.length : end))
      i = end < 0 ? text.length : end
    }
    if (i >= text.length) return fields
    i++ // the comma
  }
}

function csv(lines: string[], headerAt: number): [number, SaleItem][] {
  const strip = (l: string) => (l.endsWith("\r") ? l.slice(0, -1) : l)
  const header = fieldsOf(strip(lines[headerAt]!).replace(/^\uFEFF/, ""), headerAt + 1).map((h) => h.trim().toLowerCase())
  const column = (name: string) => header.indexOf(name)
  for (const name of ["id", "name", "image"]) {
    if (column(name) < 0) throw new CatalogProblem(headerAt + 1, `the header has no "${name}" column (expected id,name,image and optionally price, stock, per_user; got ${header.join(",")})`)
  }
  const [id, name, image, price, stock, perUser] = [column("id"), column("name"), column("image"), column("price"), column("stock"), column("per_user")]
  const optional = (f: string[], at: number) => (at < 0 ? undefined : f[at])
  const items: [number, SaleItem][] = []
  for (let i = headerAt + 1; i < lines.length; i++) {
    const text = strip(lines[i]!)
    if (text.trim() === "") continue
    const f = fieldsOf(text, i + 1)
    if (f.length !== header.length) throw new CatalogProblem(i + 1, `${f.length} fields, but the header has ${header.length}`)
    items.push([i + 1, item(i + 1, { id: f[id], name: f[name], image: f[image], price: optional(f, price), stock: optional(f, stock), per_user: optional(f, perUser) })])
  }
  return items
}
