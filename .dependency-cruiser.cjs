// The one-way layer rule, checked in CI (`npm run lint:deps`):
//   core -> backend -> formats, tokenizer -> model, vision -> methods -> generate, train -> serve -> cli
// A layer may import its own and lower layers only. src/ is the library and never imports the
// applications around it (apps/, bench/, test/). The web UI (ui/, bundled for the browser) stands
// alone: it talks to the server over HTTP and imports nothing of the repository. No import cycles anywhere.
const layer = (name, from, forbidden, why) => ({
  name,
  comment: why,
  severity: 'error',
  from: { path: from },
  to: { path: forbidden },
});

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'import cycles make layers meaningless', severity: 'error', from: {}, to: { circular: true } },
    layer('core-is-the-bottom', '^src/core/', '^src/(?!core/)', 'core (config, weights, dtypes, errors, io) imports nothing of the library'),
    layer('backend-over-core', '^src/backend/', '^src/(formats|tokenizer|model|vision|methods|generate|train|serve|cli|index)', 'kernels know only core types'),
    layer('formats-over-core', '^src/(formats|tokenizer)/', '^src/(backend|model|vision|methods|generate|train|serve|cli|index)', 'file formats and tokenizers read files into core types'),
    layer('model-knows-no-method', '^src/model/', '^src/(vision|methods|generate|train|serve|cli|index)', 'the model knows adapters only through model/method.ts'),
    layer('vision-beside-model', '^src/vision/', '^src/(model|methods|generate|train|serve|cli|index)', 'image encoders and decoding read files into features; they know no language model or method'),
    layer('methods-under-loops', '^src/methods/', '^src/(generate|train|serve|cli|index)', 'methods extend the model; generation and training use them'),
    layer('generate-uses-interfaces', '^src/generate/', '^src/(methods|train|serve|cli|index)', 'generation runs any PromptSource, never a concrete method'),
    layer('train-under-cli', '^src/train/', '^src/(generate|serve|cli|index)', 'training is a library layer'),
    layer('serve-under-cli', '^src/serve/', '^src/(cli|index)', 'the server is a library layer the CLI starts'),
    layer('library-not-apps', '^src/', '^(apps|bench|test|ui)/', 'the library never imports the demo, the benchmarks, the tests or the UI'),
    layer('ui-over-http', '^ui/', '^(src|apps|bench|test)/', 'the browser UI knows the server only through its HTTP API'),
    layer('apps-not-bench', '^apps/', '^(bench|test)/', 'applications stand on the library alone'),
    layer('bench-not-apps', '^bench/', '^(apps|test)/', 'benchmarks stand on the library alone'),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|build|node_modules)/' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.tsx', '.js'] },
  },
};
