/**
 * The operator API's input, checked: a planned sale to create, or a change to one. Every bad field is named at
 * once (the operator fixes them all in one go), unknown fields included, since a typo would otherwise be ignored.
 */
import { maxStock, type SaleItem } from "./catalog"
import type { NewSale, SaleChange } from "./definitions"
import type { Sale } from "./sales"

/** Bad fields: `items[3].stock` -> what it must be. */
export type Fields = Record<string, string>

export const maxItems = 100_000
const maxItemId = 999_999_999
const maxUserLimit = 1_000_000
const maxHoldSeconds = 86_400

type Read = { fields: Fields; value: Record<string, unknown> }

function object(value: unknown, where: string, fields: Fields): Record<string, unknown> | undefined {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Record<string, unknown>
  fields[where] = "must be a JSON object"
  return undefined
}

function unknownFields(value: Record<string, unknown>, known: string[], prefix: string, fields: Fields): void {
  for (const key of Object.keys(value)) if (!known.includes(key)) fields[`${prefix}${key}`] = `is not a field here (expected ${known.join(", ")})`
}

const whole = (value: unknown, min: number, max: number) => typeof value === "number" && Number.isInteger(value) && value >= min && value <= max

function text(value: unknown, max: number): string | undefined {
  return typeof value === "string" && value.trim().length > 0 && value.length <= max ? value.trim() : undefined
}

/** An ISO-8601 time with a date and a time (and a zone, or UTC): Unix ms, or undefined. */
export function isoTime(value: unknown): number | undefined {
  if (typeof value !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(value)) return undefined
  const ms = Date.parse(/[zZ]|[+-]\d{2}:?\d{2}$/.test(value) ? value : `${value}Z`)
  return Number.isFinite(ms) ? ms : undefined
}

function limits(body: Record<string, unknown>, fields: Fields): { userLimit?: number; holdMs?: number } {
  const out: { userLimit?: number; holdMs?: number } = {}
  if (body.user_limit !== undefined) {
    if (whole(body.user_limit, 1, maxUserLimit)) out.userLimit = body.user_limit as number
    else fields.user_limit = `must be a whole number from 1 to ${maxUserLimit}`
  }
  if (body.hold_seconds !== undefined) {
    if (whole(body.hold_seconds, 1, maxHoldSeconds)) out.holdMs = (body.hold_seconds as number) * 1000
    else fields.hold_seconds = `must be a whole number of seconds from 1 to ${maxHoldSeconds}`
  }
  return out
}

function item(value: unknown, at: number, fields: Fields): SaleItem | undefined {
  const where = `items[${at}]`
  const body = object(value, where, fields)
  if (!body) return undefined
  unknownFields(body, ["id", "name", "image", "price", "stock", "per_user"], `${where}.`, fields)
  const bad = (field: string, problem: string) => void (fields[`${where}.${field}`] = problem)
  if (!whole(body.id, 1, maxItemId)) bad("id", `must be a whole number from 1 to ${maxItemId}`)
  const name = text(body.name, 200)
  if (!name) bad("name", "must be a text of 1 to 200 characters")
  const image = typeof body.image === "string" && body.image.length <= 2048 && /^(https?:\/\/\S+|\/\S*)$/.test(body.image.trim()) ? body.image.trim() : undefined
  if (!image) bad("image", "must be an http(s) URL or a path starting with /")
  if (body.price !== undefined && !(typeof body.price === "number" && Number.isFinite(body.price) && body.price >= 0)) bad("price", "must be a number of 0 or more")
  if (body.stock !== undefined && !whole(body.stock, 1, maxStock)) bad("stock", `must be a whole number from 1 to ${maxStock}`)
  if (body.per_user !== undefined && !whole(body.per_user, 1, maxStock)) bad("per_user", `must be a whole number from 1 to ${maxStock}`)
  if (!whole(body.id, 1, maxItemId) || !name || !image) return undefined
  const result: SaleItem = { id: body.id as number, name, image, stock: (body.stock as number | undefined) ?? 1, perUser: (body.per_user as number | undefined) ?? 1 }
  if (typeof body.price === "number") result.price = body.price
  return result
}

/** A planned sale to create from a request body, or every bad field. `now`: a sale must end in the future. */
export function parseNewSale(value: unknown, defaults: { userLimit: number; holdMs: number }, now: number): { sale: NewSale } | { fields: Fields } {
  const fields: Fields = {}
  const body = object(value, "body", fields)
  if (!body) return { fields }
  unknownFields(body, ["name", "starts_at", "ends_at", "user_limit", "hold_seconds", "items"], "", fields)
  const name = text(body.name, 200)
  if (!name) fields.name = "must be a text of 1 to 200 characters"
  const startsAt = isoTime(body.starts_at)
  if (startsAt === undefined) fields.starts_at = "must be an ISO-8601 time, like 2026-12-24T20:00:00Z"
  const endsAt = isoTime(body.ends_at)
  if (endsAt === undefined) fields.ends_at = "must be an ISO-8601 time, like 2026-12-24T22:00:00Z"
  else if (startsAt !== undefined && endsAt <= startsAt) fields.ends_at = "must be after starts_at"
  else if (endsAt <= now) fields.ends_at = "must be in the future"
  const { userLimit = defaults.userLimit, holdMs = defaults.holdMs } = limits(body, fields)
  const items: SaleItem[] = []
  if (!Array.isArray(body.items) || body.items.length === 0 || body.items.length > maxItems) fields.items = `must be a list of 1 to ${maxItems} items`
  else {
    const seen = new Map<number, number>()
    body.items.forEach((raw, i) => {
      const parsed = item(raw, i, fields)
      if (!parsed) return
      const first = seen.get(parsed.id)
      if (first !== undefined) fields[`items[${i}].id`] = `${parsed.id} is already the id of items[${first}]`
      else seen.set(parsed.id, i)
      items.push(parsed)
    })
  }
  if (Object.keys(fields).length > 0) return { fields }
  return { sale: { name: name!, startsAt: startsAt!, endsAt: endsAt!, userLimit, holdMs, items } }
}

/** A change to a sale from a PATCH body, or every bad field. */
export function parseSaleChange(value: unknown, sale: Sale, now: number): { change: SaleChange } | { fields: Fields } {
  const fields: Fields = {}
  const body = object(value, "body", fields)
  if (!body) return { fields }
  unknownFields(body, ["name", "ends_at", "user_limit", "hold_seconds", "items"], "", fields)
  const change: SaleChange = {}
  if (body.name !== undefined) {
    const name = text(body.name, 200)
    if (name) change.name = name
    else fields.name = "must be a text of 1 to 200 characters"
  }
  if (body.ends_at !== undefined) {
    const endsAt = isoTime(body.ends_at)
    if (endsAt === undefined) fields.ends_at = "must be an ISO-8601 time, like 2026-12-24T22:00:00Z"
    else if (endsAt <= sale.startsAt) fields.ends_at = "must be after the sale's starts_at"
    else if (endsAt <= now) fields.ends_at = "must be in the future (POST /admin/sales/{id}/end ends a sale now)"
    else change.endsAt = endsAt
  }
  Object.assign(change, limits(body, fields))
  if (body.items !== undefined) {
    if (!Array.isArray(body.items) || body.items.length > maxItems) fields.items = `must be a list of {"id", "stock"}, ${maxItems} at most`
    else {
      const stocks: { id: number; stock: number }[] = []
      body.items.forEach((raw, i) => {
        const entry = object(raw, `items[${i}]`, fields)
        if (!entry) return
        unknownFields(entry, ["id", "stock"], `items[${i}].`, fields)
        if (!whole(entry.id, 1, maxItemId) || sale.items.position(entry.id as number) < 0) fields[`items[${i}].id`] = "must be the id of one of the sale's items"
        else if (!whole(entry.stock, 1, maxStock)) fields[`items[${i}].stock`] = `must be a whole number from 1 to ${maxStock}`
        else stocks.push({ id: entry.id as number, stock: entry.stock as number })
      })
      change.stocks = stocks
    }
  }
  if (Object.keys(fields).length > 0) return { fields }
  return { change }
}

/** One sentence naming the bad fields (the first 20; the body's `fields` has them all). */
export function fieldsMessage(fields: Fields): string {
  const entries = Object.entries(fields)
  const named = entries.slice(0, 20).map(([field, problem]) => `${field} ${problem}`)
  return `${entries.length === 1 ? "One field is" : `${entries.length} fields are`} invalid: ${named.join("; ")}${entries.length > 20 ? `; and ${entries.length - 20} more` : ""}.`
}
