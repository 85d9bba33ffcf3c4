/**
 * A real browser for the tests: Debian's chromium driven by playwright-core (which downloads nothing).
 * Where chromium is missing the browser tests skip, except under CI=true, where they fail: CI installs it (.ci/run).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { chromium, type BrowserContext, type Page } from "playwright-core"

export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

/** Whether the browser tests can run here; under CI a missing browser is an error, not a reason to skip. */
export function browserAvailable(): boolean {
  if (existsSync(chromiumPath)) return true
  if (process.env.CI === "true") throw new Error(`${chromiumPath} is missing: install chromium (apt-get install chromium), as .ci/run does`)
  console.warn(`skipping the browser tests: ${chromiumPath} is missing (apt-get install chromium)`)
  return false
}

export type TestBrowser = { context: BrowserContext; page: Page; close(): Promise<void> }

/**
 * Headless chromium with a fresh profile (its --user-data-dir, which playwright takes as launchPersistentContext's
 * first argument), no network of its own (no sync, no updates, no QUIC), and one page.
 */
export async function openBrowser(viewport = { width: 1000, height: 760 }): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), "fs-chromium-"))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  })
  const page = context.pages()[0] ?? (await context.newPage())
  return {
    context,
    page,
    async close() {
      await context.close().catch(() => {})
      rmSync(profile, { recursive: true, force: true })
    },
  }
}

/** The text of the element with this data-field, or undefined while there is none. */
export const fieldText = (page: Page, field: string) => page.locator(`[data-field="${field}"]`).first().textContent({ timeout: 5000 })

/** Waits until the data-field's text is `expected` (the page updates once a second). */
export async function waitForField(page: Page, field: string, expected: string | RegExp, timeoutMs = 10_000): Promise<void> {
  await page.waitForFunction(
    ([name, pattern, flags]) => {
      // Runs in the page (this project's types have no DOM).
      const doc = (globalThis as unknown as { document: { querySelector(s: string): { textContent: string | null } | null } }).document
      const text = doc.querySelector(`[data-field="${name}"]`)?.textContent ?? ""
      return flags === null ? text === pattern : new RegExp(pattern, flags).test(text)
    },
    [field, typeof expected === "string" ? expected : expected.source, typeof expected === "string" ? null : expected.flags] as const,
    { timeout: timeoutMs, polling: 50 },
  )
}
