// ESLint with typescript-eslint's type-aware rules (recommended-type-checked): floating promises,
// misused promises, unsafe `any` flows and the like need the type checker, which a syntax-only
// linter cannot see. `npm run lint:types` applies all of it (CI does); `npm run lint` only the rules
// that need no types (eslint.fast.config.js), fast enough to run before every commit.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'data/', 'drizzle/', '.tmp/', 'scratch/'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      // One program for the whole tsconfig.json: ~25 % faster here than the project service.
      parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // Passing on a rejection reason of unknown type (an async iterator's throw(), an abort
      // signal's reason) is not inventing a non-Error one (only-throw-error allows the same).
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
      // `async` without `await` is how a function that must return a promise (the QUIC library's
      // crypto callbacks, openStream) turns its throws into rejections.
      '@typescript-eslint/require-await': 'off',
      // node:test's describe/test return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'suite', 'it', 'test'] }] },
      ],
    },
  },
  {
    // Tests read GraphQL and JSON answers as `any` on purpose (test/helpers/graphql.ts): each field
    // they touch is asserted, so a wrong shape fails the test. Everything else applies to them too.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // Plain JavaScript outside tsconfig.json: the rules that need no types.
    files: ['**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
