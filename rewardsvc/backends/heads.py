"""Reward-model heads that public checkpoints use but transformers doesn't ship, built in here.

Some public reward models save weights for a class that exists only in their users' scripts, not in
the checkpoint (no `auto_map`, no modeling file): INF-ORM-Llama3.1-70B's model card and RewardBench
define `INFORMForSequenceClassification` inline. transformers would load such a checkpoint as the
stock `LlamaForSequenceClassification` with a blank head. Matched by the architecture name in
config.json, they load here instead, with no remote code to trust.

    INFORMForSequenceClassification   LlamaModel + score = Linear(h, h), ReLU, Linear(h, num_labels),
                                      read at the last real token
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class LlamaMLPHeadForSequenceClassification(LlamaPreTrainedModel):
    """A Llama backbone with a two-layer MLP score head (INF-ORM's layout: the same parameter names)."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = LlamaModel(config)
        h = config.hidden_size
        self.score = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, self.num_labels))
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, **_: Any) -> SequenceClassifierOutputWithPast:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # The rightmost real token, whichever side the batch is padded on (INF-ORM reads the token
        # before the first pad: the same one for right padding and for no padding).
        width = attention_mask.shape[1]
        last = (attention_mask * torch.arange(width, device=attention_mask.device)).argmax(-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return SequenceClassifierOutputWithPast(logits=self.score(pooled))


#: config.json architecture name -> the class that loads it.
BUILTIN_ARCHITECTURES: dict[str, type] = {
    "INFORMForSequenceClassification": LlamaMLPHeadForSequenceClassification,
}
