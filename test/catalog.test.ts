/** CATALOG_FILE: the shop's own items, from CSV or JSON lines, checked at start; checkout and purchase answer with them. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { withCatalog } from "../src/catalog"
import { ConfigError, parseConfig } from "../src/config"
import { CatalogProblem, fixedCatalog, parseCatalog } from "../src/sale/catalog"
import { engines, harness, type Harness } from "./support/harness"
import { request, startServer } from "./support/process"

const dir = mkdtempSync(join(tmpdir(), "fs-catalog-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, text: string) => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

const parsed = (argv: string[], env: Record<string, string> = {}) => {
  const p = parseConfig(argv, env)
  if (p.help) throw new Error("help")
  return p.config
}

/** The line and message parseCatalog refuses the text with. */
const problem = (text: string) => {
  try {
    parseCatalog(text)
  } catch (error) {
    if (error instanceof CatalogProblem) return { line: error.line, message: error.message }
    throw error
  }
  throw new Error("the catalog was accepted")
}

describe("parsing", () => {
  test("CSV: a header naming id, name and image in any order, optional price, quoted fields, CRLF and a BOM", () => {
    const text = '\uFEFFname,image,id,price\r\n"Mug, large",https://shop.example/mug.jpg,2,12.50\r\n"The ""Best"" Kettle",/img/kettle.png,1,\r\n\r\n'
    expect(parseCatalog(text)).toEqual([
      { id: 2, name: "Mug, large", image: "https://shop.example/mug.jpg", price: 12.5, stock: 1, perUser: 1 },
      { id: 1, name: 'The "Best" Kettle', image: "/img/kettle.png", stock: 1, perUser: 1 },
    ])
  })

  test("stock and per_user columns give an item units and a per-user limit (1 each when absent)", () => {
    const csv = "id,name,image,stock,per_user\n1,Sneaker,/s.jpg,500,2\n2,Sock,/k.jpg,,\n"
    expect(parseCatalog(csv)).toEqual([
      { id: 1, name: "Sneaker", image: "/s.jpg", stock: 500, perUser: 2 },
      { id: 2, name: "Sock", image: "/k.jpg", stock: 1, perUser: 1 },
    ])
    expect(parseCatalog('{"id": 1, "name": "Cap", "image": "/c.jpg", "stock": 20, "per_user": 3}')).toEqual([{ id: 1, name: "Cap", image: "/c.jpg", stock: 20, perUser: 3 }])
    expect(problem("id,name,image,stock\n1,Cap,/c.jpg,0\n")).toEqual({ line: 2, message: 'item 1: stock "0" is not a whole number from 1 to 1000000' })
    expect(problem('{"id": 1, "name": "Cap", "image": "/c.jpg", "per_user": 1.5}')).toEqual({ line: 1, message: "item 1: per_user 1.5 is not a whole number from 1 to 1000000" })
  })

  test("JSON lines, recognised by the first character", () => {
    const text = '{"id": 1, "name": "Lamp", "image": "https://shop.example/lamp.jpg", "price": 30}\n\n{"id": "2", "name": "Pen", "image": "/pen.jpg"}\n'
    expect(parseCatalog(text)).toEqual([
      { id: 1, name: "Lamp", image: "https://shop.example/lamp.jpg", price: 30, stock: 1, perUser: 1 },
      { id: 2, name: "Pen", image: "/pen.jpg", stock: 1, perUser: 1 },
    ])
  })

  test("a bad catalog names the line and what is wrong", () => {
    expect(problem("")).toEqual({ line: 1, message: "the file is empty" })
    expect(problem("id,name,image\n")).toEqual({ line: 1, message: "only a header, no items" })
    expect(problem("id,name\n1,Mug\n")).toMatchObject({ line: 1, message: expect.stringContaining('no "image" column') })
    expect(problem("id,name,image\n1,Mug,/a.jpg\n2,Pen,/b.jpg\n1,Cup,/c.jpg\n")).toEqual({ line: 4, message: "duplicate id 1 (first on line 2)" })
    expect(problem("id,name,image\n1,Mug,/a.jpg\n3,Pen,/b.jpg\n")).toMatchObject({ line: 3, message: expect.stringContaining("ids must be 1..2") })
    expect(problem("id,name,image\n1,Mug\n")).toMatchObject({ line: 2, message: "2 fields, but the header has 3" })
    expect(problem("id,name,image\nx,Mug,/a.jpg\n")).toMatchObject({ line: 2, message: expect.stringContaining("not a whole number") })
    expect(problem("id,name,image\n1,,/a.jpg\n")).toMatchObject({ line: 2, message: "item 1 has no name" })
    expect(problem("id,name,image\n1,Mug,mug.jpg\n")).toMatchObject({ line: 2, message: expect.stringContaining("not an http(s) URL") })
    expect(problem("id,name,image,price\n1,Mug,/a.jpg,cheap\n")).toMatchObject({ line: 2, message: expect.stringContaining("price") })
    expect(problem('id,name,image\n1,"Mug,/a.jpg\n')).toMatchObject({ line: 2, message: expect.stringContaining("not closed") })
    expect(problem('{"id":1,"name":"a","image":"/a"}\n{"id":2,"name":"b"}\n')).toEqual({ line: 2, message: 'missing "image"' })
    expect(problem('{"id":1,"name":"a","image":"/a"}\n{"id":2,\n')).toMatchObject({ line: 2, message: expect.stringContaining("not valid JSON") })
  })

  test("a 100,000-line catalog loads whole, every line as written", () => {
    const lines = ["id,name,image,price"]
    for (let i = 1; i <= 100_000; i++) lines.push(`${i},"Item number ${i}, blue",https://shop.example/items/${i}.jpg,${(i % 500) + 0.99}`)
    const path = file("big.csv", lines.join("\n"))
    const { config, catalog } = withCatalog({ ...parsed([]), catalogFile: path }, new Set())
    expect(config.saleItems).toBe(100_000)
    expect(catalog.itemOf(1, 99_999)).toEqual({ id: 99_999, name: "Item number 99999, blue", image: "https://shop.example/items/99999.jpg", price: 499.99, stock: 1, perUser: 1 })
    expect(catalog.itemOf(1, 1)).toEqual({ id: 1, name: "Item number 1, blue", image: "https://shop.example/items/1.jpg", price: 1.99, stock: 1, perUser: 1 })
  })
})

describe("CATALOG_FILE and SALE_ITEMS", () => {
  const three = () => file("three.csv", "id,name,image\n1,A,/a\n2,B,/b\n3,C,/c\n")
  const load = (argv: string[]) => {
    const p = parseConfig(argv, {})
    if (p.help) throw new Error("help")
    return withCatalog(p.config, p.given)
  }

  test("SALE_ITEMS is taken from the catalog when not given, and must agree when given", () => {
    expect(load(["--catalog-file", three()]).config.saleItems).toBe(3)
    expect(load(["--catalog-file", three(), "--sale-items", "3"]).config.saleItems).toBe(3)
    expect(() => load(["--catalog-file", three(), "--sale-items", "4"])).toThrow(/SALE_ITEMS .* is 4, but CATALOG_FILE .* has 3 items/)
  })

  test("an unreadable file is a configuration error naming it", () => {
    expect(() => load(["--catalog-file", join(dir, "missing.csv")])).toThrow(ConfigError)
    expect(() => load(["--catalog-file", join(dir, "missing.csv")])).toThrow(/CATALOG_FILE \(--catalog-file\) .*missing\.csv: cannot read it/)
  })

  test("without CATALOG_FILE the generated catalog stays", () => {
    const { catalog, config } = load([])
    expect(catalog.size).toBeUndefined()
    expect(config.saleItems).toBe(10_000)
  })
})

for (const engine of engines) describe(`${engine} engine`, () => {
  let h: Harness
  beforeAll(async () => {
    const items = [
      { id: 1, name: "Walnut Desk Lamp", image: "https://shop.example/lamp.jpg", price: 49, stock: 1, perUser: 1 },
      { id: 2, name: "Linen Apron", image: "/img/apron.jpg", stock: 1, perUser: 1 },
    ]
    h = await harness({ saleItems: 2 }, engine, { catalog: fixedCatalog(items) })
  })
  afterAll(() => h.close())

  test("checkout and purchase answer with the catalog's names, images and prices", async () => {
    const held = await h.checkout("ann", 1)
    expect(held.body.item).toEqual({ id: 1, name: "Walnut Desk Lamp", image: "https://shop.example/lamp.jpg", price: 49 })
    const bought = await h.purchase(held.body.code)
    expect(bought.body.item).toEqual(held.body.item)
    expect((await h.checkout("bob", 2)).body.item).toEqual({ id: 2, name: "Linen Apron", image: "/img/apron.jpg" })
    expect((await h.checkout("bob", 3)).body.error).toBe("unknown_item")
  })
})

describe("the server", () => {
  test("sells the catalog's items, as many as the file has", async () => {
    const data = mkdtempSync(join(dir, "data-"))
    const catalog = file("shop.jsonl", '{"id":1,"name":"Teapot","image":"/teapot.jpg"}\n{"id":2,"name":"Cup","image":"/cup.jpg"}\n')
    const s = await startServer({ DATA_DIR: data, REDIS_URL: "", DATABASE_URL: "", CATALOG_FILE: catalog })
    try {
      expect((await request(s.base, "GET", "/status")).body.items_total).toBe(2)
      expect((await request(s.base, "POST", "/checkout?user_id=ann&id=2")).body.item).toEqual({ id: 2, name: "Cup", image: "/cup.jpg" })
    } finally {
      await s.stop()
    }
  })

  test("a bad catalog exits 2 naming the file, the line and what is wrong", () => {
    const bad = file("bad.csv", "id,name,image\n1,Mug,/a.jpg\n1,Cup,/b.jpg\n")
    const run = Bun.spawnSync(["bun", join(import.meta.dir, "..", "src", "main.ts")], { env: { ...process.env, CATALOG_FILE: bad, REDIS_URL: "", DATABASE_URL: "" }, stderr: "pipe" })
    expect(run.exitCode).toBe(2)
    expect(run.stderr.toString()).toContain(`CATALOG_FILE (--catalog-file) ${bad}, line 3: duplicate id 1 (first on line 2)`)
  })
})
