// ScienceQA pipeline: the LLaVA test file and the official problems/splits/captions files read
// against each other (the same answers and choices where both have a problem), the paper's prompt,
// the answer extractor (both answer forms, unparsable = wrong), and the table's columns on a
// hand-checked set (TXT and IMG overlap; subject and grade columns count known metadata only).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { extractAnswer, loadLlavaScienceQA, loadScienceQA, sqaPrompt, sqaTable, sqaTarget, type SqaProblem } from '../src/train/scienceqa.js';
import { assets } from './helpers.js';

const dir = path.join(assets, 'data/scienceqa');

describe('ScienceQA', () => {
  it("loads the 4,241 test problems from LLaVA's file, joined with problems_first1773 where it has them", () => {
    const ps = loadLlavaScienceQA(path.join(dir, 'llava_test_CQM-A.json'), path.join(dir, 'problems_first1773.json'), path.join(dir, 'captions.json'));
    assert.equal(ps.length, 4241);
    assert.equal(ps.filter((p) => p.image).length, 2017); // as the assets' manifest says
    assert.equal(ps.filter((p) => p.subject !== null).length, 361); // the test problems among ids 1..1773
    const p5 = ps.find((p) => p.id === '5')!;
    assert.equal(p5.question, "Which of the following could Gordon's test show?");
    assert.equal(p5.answer, 1);
    assert.equal(p5.image, '5/image.png');
    assert.ok(p5.caption && p5.caption.length > 0);
    // without metadata, context and question stay together and TXT comes from the "Context:" line
    const bare = loadLlavaScienceQA(path.join(dir, 'llava_test_CQM-A.json'));
    const b26 = bare.find((p) => p.id === '26')!;
    assert.equal(b26.question, 'Context: Select the better estimate.\nHow long does it take to bake lasagna in the oven?');
    assert.deepEqual([b26.choices, b26.answer, b26.hasContext], [['33 minutes', '33 hours'], 0, true]);
    const train = loadScienceQA(path.join(dir, 'problems_first1773.json'), path.join(dir, 'pid_splits.json'), 'train');
    assert.equal(train.length, 1041);
  });

  it('the paper\'s prompt and target; the extractor takes "The answer is (A)" and "The answer is A.", anything else is null', () => {
    const p: SqaProblem = {
      id: 'x',
      question: 'Which is a mammal?',
      context: '',
      choices: ['frog', 'dog'],
      answer: 1,
      image: 'x/image.png',
      subject: null,
      grade: null,
      hasContext: false,
      caption: 'A dog.',
    };
    assert.equal(sqaPrompt(p, true), 'Question: Which is a mammal?\nContext: A dog.\nChoices: (A) frog (B) dog\nAnswer:');
    assert.equal(sqaPrompt(p, false), 'Question: Which is a mammal?\nContext: N/A\nChoices: (A) frog (B) dog\nAnswer:');
    assert.equal(sqaTarget(p), ' The answer is (B).');
    // the letters format (tokenizers without parentheses): LLaVA's option lines, ScienceQA's answer form
    assert.equal(sqaPrompt(p, true, 'letters'), 'Question: Which is a mammal?\nContext: A dog.\nChoices:\nA. frog\nB. dog\nAnswer:');
    assert.equal(sqaTarget(p, 'letters'), ' The answer is B.');
    assert.equal(sqaTarget(p, 'letters', 0), ' The answer is A.');
    assert.equal(extractAnswer(sqaTarget(p, 'letters'), 2), 1);
    assert.equal(extractAnswer(' The answer is (B).', 2), 1);
    assert.equal(extractAnswer('The answer is A. Because', 2), 0);
    assert.equal(extractAnswer('The answer is (C)', 2), null); // names no choice
    assert.equal(extractAnswer('B', 2), null);
    assert.equal(extractAnswer('The answer is Apples', 2), null);
  });

  it('the table: TXT and IMG overlap, NO is neither, unparsable answers are wrong', () => {
    const mk = (subject: string | null, grade: number | null, hasContext: boolean, image: boolean): SqaProblem => ({
      id: '',
      question: '',
      context: '',
      choices: ['a', 'b'],
      answer: 0,
      image: image ? 'i' : null,
      subject,
      grade,
      hasContext,
      caption: null,
    });
    const ps = [
      mk('natural science', 3, true, true),
      mk('social science', 8, false, false),
      mk('language science', 12, true, false),
      mk(null, null, false, true),
    ];
    const t = sqaTable(ps, [0, 1, null, 0]);
    assert.deepEqual(Object.fromEntries(Object.entries(t).map(([k, v]) => [k, [v.acc, v.n]])), {
      NAT: [100, 1],
      SOC: [0, 1],
      LAN: [0, 1],
      TXT: [50, 2],
      IMG: [100, 2],
      NO: [0, 1],
      'G1-6': [100, 1],
      'G7-12': [0, 2],
      Avg: [50, 4],
    });
  });
});
