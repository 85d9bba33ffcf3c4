/** The API docs page in a real browser: it renders from the binary's script, lists the operations, and shows no stray text. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { harness, serve, type Harness } from "./support/harness"
import { browserAvailable, openBrowser, type TestBrowser } from "./support/browser"

const run = browserAvailable()

describe.skipIf(!run)("the docs page", () => {
  let h: Harness
  let server: ReturnType<typeof serve>
  let browser: TestBrowser
  beforeAll(async () => {
    h = await harness({}, "embedded")
    server = serve(h)
    browser = await openBrowser()
  })
  afterAll(async () => {
    await browser?.close()
    await server?.stop()
    await h?.close()
  })

  for (const path of ["/swagger", "/swagger/"]) {
    test(`at ${path} it lists the operations, with no text of the document leaking above them`, async () => {
      const { page } = browser
      const errors: string[] = []
      page.on("pageerror", (error) => errors.push(error.message))
      await page.goto(`${server.base}${path}`)
      await page.getByText("Hold an item").first().waitFor({ timeout: 15_000 })
      await page.getByText("Buy a held item").first().waitFor({ timeout: 5_000 })
      const text = await page.evaluate(() => (globalThis as unknown as { document: { body: { innerText: string } } }).document.body.innerText)
      expect(text).not.toContain("could not be loaded")
      // What leaked before: the description's quotes and placeholders ended an attribute early.
      expect(text).not.toMatch(/" \/>|<code>|<sentence>/)
      // The page's own text starts with the document's title, not with a fragment of an attribute.
      expect(text.trimStart().slice(0, 200)).not.toMatch(/^[",{}]/)
      expect(errors).toEqual([])
    }, 30_000)
  }
})
