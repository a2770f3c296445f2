// `npm run lint`: the rules of eslint.config.js that need no type information, in a few seconds
// (the type-aware ones build a TypeScript program, ~25 s on 2 cores: `npm run lint:types`, run by CI).
import tseslint from 'typescript-eslint';
import config from './eslint.config.js';

export default tseslint.config(...config, {
  files: ['**/*.ts', '**/*.js'],
  extends: [tseslint.configs.disableTypeChecked],
  // Directives for type-aware rules look unused here; lint:types still reports unused ones.
  linterOptions: { reportUnusedDisableDirectives: 'off' },
});
