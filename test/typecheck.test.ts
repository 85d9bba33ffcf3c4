import { expect, test } from "bun:test"
import { join } from "node:path"

test("tsc --noEmit is clean", () => {
  const root = join(import.meta.dir, "..")
  const run = Bun.spawnSync([join(root, "node_modules", ".bin", "tsc"), "--noEmit", "-p", root], { stdout: "pipe", stderr: "pipe" })
  expect(run.stdout.toString() + run.stderr.toString()).toBe("")
  expect(run.exitCode).toBe(0)
}, 60_000)
