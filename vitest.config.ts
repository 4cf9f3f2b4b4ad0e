import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Namespace and TAP tests share kernel state; files run one at a time.
    fileParallelism: false,
  },
});
