import { defineConfig } from 'vitest/config';

// Unit tests of the JupyterLab extension's panel (`npm run test:ui-unit`):
// plain DOM in happy-dom, with a stubbed `requestAPI`. The test files live
// in labextension/test/, outside the `tsc` build (rootDir labextension/src).
export default defineConfig({
  test: {
    environment: 'happy-dom',
    include: ['labextension/test/**/*.test.ts'],
    restoreMocks: true,
    testTimeout: 10000
  }
});
