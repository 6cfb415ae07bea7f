// eslint for the sidebar and the inline completer (`jlpm lint`, run by `scripts/dev.sh check`):
// eslint's and typescript-eslint's recommended rules over src/, at zero findings.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/**', 'node_modules/**', 'src/generated/**', '../lms_jupyter/**', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.{ts,tsx}'],
    rules: {
      // unused arguments named _x are deliberate (callbacks with a fixed signature)
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }]
    }
  },
  {
    // test doubles stand in for JupyterLab and the server with partial objects
    files: ['src/**/__tests__/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' }
  }
);
