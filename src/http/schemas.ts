/**
 * The OpenAPI document's schemas (http/docs.ts assembles the document): the shapes of every body the API answers
 * and takes, and a responses object listing every error code per status.
 */
import { codeToStatus, type ErrorCode } from "../errors"

export type Schema = Record<string, unknown>
export const str = (extra: Schema = {}): Schema => ({ type: "string", ...extra })
export const int = (extra: Schema = {}): Schema => ({ type: "integer", ...extra })
export const object = (properties: Record<string, Schema>, optional: string[] = []): Schema => ({
  type: "object",
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
  properties,
})
export const time = str({ format: "date-time" })

export const item = object(
  {
    id: int(),
    name: str(),
    image: str({ description: "An http(s) URL, or a path on the shop's site when the catalog gives one." }),
    price: { type: "number", description: "Only when the catalog has a price." },
  },
  ["price"],
)

export const schemas = {
  checkout: object({ message: str({ enum: ["success"] }), code: str(), sale_id: int(), item, expires_at: time }),
  purchase: object({ message: str({ enum: ["success"] }), sale_id: int(), user_id: str(), item, purchased_at: time }),
  status: object({
    sale_id: int({ nullable: true, description: "The open sale; when none is, the next planned one; null when none is planned." }),
    name: str({ nullable: true }),
    started_at: { ...time, nullable: true },
    ends_at: { ...time, nullable: true, description: "When it closes: its end, or when an operator ended it." },
    seconds_remaining: int(),
    items_total: int({ description: "Units in all." }),
    items_sold: int({ description: "Units sold." }),
    items_reserved: int({ description: "Units held by live holds." }),
    items_available: int({ description: "Units neither sold nor held." }),
    checkouts: object({ accepted: int(), rejected: int() }),
    purchases: object({ accepted: int(), rejected: int() }),
    sale_status: str({ enum: ["active", "paused", "sold_out", "scheduled", "none"], description: "scheduled: no sale is open and this one is next (its counters zero); none: no sale is planned." }),
  }),
  health: object({ status: str({ enum: ["ok", "degraded", "down"] }), checks: { type: "object", additionalProperties: true } }),
}

export const shelfItem = object({ ...item.properties as Record<string, Schema>, stock: int({ description: "Units in all." }), available: int({ description: "Units neither sold nor held, at most a second ago." }) }, ["price"])
export const nextSale = object({ id: int(), name: str(), starts_at: time })
export const counts = object({ accepted: int(), rejected: int() })
export const saleView = object(
  {
    id: int(),
    kind: str({ enum: ["planned", "recurring"] }),
    name: str(),
    status: str({ enum: ["scheduled", "active", "paused", "sold_out", "ended"] }),
    starts_at: time,
    ends_at: time,
    ended_at: { ...time, nullable: true, description: "When an operator ended it, if one did." },
    paused: { type: "boolean" },
    user_limit: int(),
    hold_seconds: int(),
    items_total: int(),
    units_total: int(),
    units_sold: int(),
    units_reserved: int(),
    units_available: int(),
    checkouts: counts,
    purchases: counts,
    rev: int({ description: "The revision of its settings: every change bumps it." }),
    items: { type: "array", items: object({ ...item.properties as Record<string, Schema>, stock: int(), per_user: int(), available: int() }, ["price", "available"]), description: "In the answers about one sale." },
  },
  ["items"],
)
const saleItemInput = object(
  {
    id: int({ minimum: 1, maximum: 999_999_999 }),
    name: str({ maxLength: 200 }),
    image: str({ description: "An http(s) URL, or a path starting with /." }),
    price: { type: "number", minimum: 0 },
    stock: int({ minimum: 1, maximum: 1_000_000, default: 1 }),
    per_user: int({ minimum: 1, maximum: 1_000_000, default: 1, description: "Units of this item one user may buy (purchases plus live holds)." }),
  },
  ["price", "stock", "per_user"],
)
export const saleInput = object(
  {
    name: str({ maxLength: 200 }),
    starts_at: time,
    ends_at: time,
    user_limit: int({ minimum: 1, description: "Default: USER_LIMIT." }),
    hold_seconds: int({ minimum: 1, maximum: 86_400, description: "Default: HOLD_SECONDS." }),
    items: { type: "array", minItems: 1, maxItems: 100_000, items: saleItemInput },
  },
  ["user_limit", "hold_seconds"],
)
export const salePatch = object(
  {
    name: str({ maxLength: 200 }),
    ends_at: time,
    user_limit: int({ minimum: 1 }),
    hold_seconds: int({ minimum: 1, maximum: 86_400 }),
    items: { type: "array", items: object({ id: int(), stock: int({ minimum: 1, description: "Raised to restock; lowered no further than the highest unit sold or held." }) }) },
  },
  ["name", "ends_at", "user_limit", "hold_seconds", "items"],
)
export const action = object({ id: int(), at: time, action: str(), sale_id: int({ nullable: true }), details: { type: "object", additionalProperties: true }, client: str({ nullable: true }) })

export const json = (schema: Schema) => ({ "application/json": { schema } })
export const order = object({ sale_id: int(), item_id: int(), unit: int(), name: str({ nullable: true }), price: { type: "number", nullable: true }, user_id: str(), code: str(), purchased_at: time })
export const userUnit = (when: string) => object({ item_id: int(), name: str({ nullable: true }), unit: int(), code: str(), [when]: time })
const difference = object({ kind: str({ enum: ["sold", "hold", "item", "user", "counter"] }), key: str({ description: "What differs: item 3 unit 2, user ann, checkouts.accepted, ..." }), live: { description: "What the live state says (null: nothing)." }, kept: { description: "What the durable store says (null: nothing)." } })
export const audit = object({
  sale_id: int(),
  at: time,
  trigger: str({ enum: ["auto", "operator"] }),
  ok: { type: "boolean" },
  rebuilt: { type: "boolean", description: "The live state was rebuilt from the store during the sale: from then on the two agree by construction." },
  rebuilt_at: { ...time, nullable: true },
  checked: object({ units_sold: int(), live_holds: int(), items: int(), users: int() }),
  differences_count: int(),
  differences: { type: "array", items: difference, description: "The first 1,000." },
})
export const report = object({
  sale_id: int(),
  name: str(),
  starts_at: time,
  closes_at: time,
  units_total: int(),
  units_sold: int(),
  revenue: { type: "number", nullable: true },
  first_sale_at: { ...time, nullable: true },
  sold_out_at: { ...time, nullable: true },
  attempts: object({ checkouts: { type: "object", additionalProperties: { type: "integer" } }, purchases: { type: "object", additionalProperties: { type: "integer" } } }),
  holds_released: int(),
  items: { type: "array", items: object({ id: int(), name: str({ nullable: true }), price: { type: "number", nullable: true }, stock: int({ nullable: true }), sold: int(), first_sale_at: time, last_sale_at: time }) },
  audit: { ...audit, nullable: true },
  audit_due_at: { ...time, nullable: true },
})

/** An OpenAPI responses object: the success, then one entry per status listing its error codes. */
export function responses(ok: Schema, okDescription: string, errors: ErrorCode[], okStatus = 200) {
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of errors) byStatus.set(codeToStatus[code], [...(byStatus.get(codeToStatus[code]) ?? []), code])
  const result: Record<string, unknown> = { [okStatus]: { description: okDescription, content: json(ok) } }
  for (const [status, codes] of byStatus) {
    result[status] = {
      description: codes.map((c) => `\`${c}\``).join(", "),
      content: json({ type: "object", required: ["error", "message"], properties: { error: str({ enum: codes }), message: str() } }),
    }
  }
  return result
}
