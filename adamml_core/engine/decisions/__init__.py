"""How inference chooses which (segment, modality) items run: the one home of every decision rule.

- :mod:`.rules`: a rule is ``policy_inputs -> Decision(decisions, probs)``; the learned policy's
  deterministic rules (argmax, one threshold, per-modality thresholds) and ``threshold_decisions``;
- :mod:`.choice`: which of them a trained checkpoint runs with (budget > threshold > argmax >
  its rate-matched thresholds > argmax), for eval, predict, explain, compare and the benchmark;
- :mod:`.random`: decisions drawn at per-modality rates (the random-policy baseline, the benchmark);
- :mod:`.rates`: the ``m1=0.3,m2=0.8`` parser of those rates.

Nothing is imported here: ``budget`` imports ``rules`` and ``choice`` imports ``budget``.
"""
