"""A process reward model in Qwen2.5-Math-PRM's layout, written for the tests (not Qwen's own file).

Same class name and parameter names as Qwen/Qwen2.5-Math-PRM-7B (Qwen2ForProcessRewardModel, loaded
through AutoModel): a Qwen2 backbone and score = Linear(h, h), ReLU, Linear(h, 2), applied to every
token; the caller reads the logits at each <extra_0> step token (index 1 = good step).
"""

from __future__ import annotations

from torch import nn
from transformers import Qwen2Model, Qwen2PreTrainedModel
from transformers.modeling_outputs import TokenClassifierOutput


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.num_labels = 2
        self.model = Qwen2Model(config)
        h = config.hidden_size
        self.score = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, self.num_labels))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, **kwargs):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         inputs_embeds=inputs_embeds, use_cache=False)
        return TokenClassifierOutput(logits=self.score(out.last_hidden_state))
