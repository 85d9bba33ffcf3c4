/** The OpenAPI document: response shapes and, per endpoint, every error code it can answer with, grouped by status. */
import { Type as T } from "@sinclair/typebox"
import type { TSchema } from "elysia"
import { openapi } from "@elysiajs/openapi"
import { codeToStatus, type ErrorCode } from "../errors"

// Response shapes, for the document only: responses are built by the handlers, not validated at run time.
const ItemSchema = T.Object({
  id: T.Integer(),
  name: T.String(),
  image: T.String({ description: "An http(s) URL, or a path on the shop's site when CATALOG_FILE gives one." }),
  price: T.Optional(T.Number({ description: "Only when CATALOG_FILE has a price column." })),
})
export const schemas = {
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
export function responses(ok: TSchema, okDescription: string, errors: ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of errors) byStatus.set(codeToStatus[code], [...(byStatus.get(codeToStatus[code]) ?? []), code])
  const result: Record<string, unknown> = { 200: { description: okDescription, content: { "application/json": { schema: ok } } } }
  for (const [status, codes] of byStatus) {
    result[status] = {
      description: codes.map((c) => `\`${c}\``).join(", "),
      content: { "application/json": { schema: { type: "object", required: ["error", "message"], properties: { error: { type: "string", enum: codes }, message: { type: "string" } } } } },
    }
  }
  return result as never
}

export const healthResponses = {
  200: { description: "Can sell (ok or degraded).", content: { "application/json": { schema: schemas.health } } },
  503: { description: "Cannot sell.", content: { "application/json": { schema: schemas.health } } },
} as never

/** The document at /swagger/json and its UI at /swagger, whose script is served from the binary (works offline). */
export const docs = (scriptPath: string) =>
  openapi({
    path: "/swagger",
    specPath: "/swagger/json",
    exclude: { paths: [scriptPath] },
    documentation: {
      info: {
        title: "Flash sale",
        version: "1.0.0",
        description:
          "Sells a fixed stock in a burst of demand. Every period a new sale opens; users check an item out (it is held for them and they get a code), then buy it with the code. " +
          'Every error body is {"error": "<code>", "message": "<sentence>"} with one status per code.',
      },
    },
    scalar: { cdn: scriptPath, withDefaultFonts: false, hideClientButton: true } as never,
  })
