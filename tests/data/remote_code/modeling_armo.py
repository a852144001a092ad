"""A multi-objective reward model in ArmoRM's layout, written for the tests (not ArmoRM's own file).

Same parameter names and config keys as RLHFlow/ArmoRM-Llama3-8B-v0.1 (LlamaForRewardModelWithGating):
`regression_layer` (one reward per objective, read at the last real token), `gating` (an MLP with
`gating_n_hidden` ReLU layers, softmax(x / gating_temperature) * logit_scale, read at the last
occurrence of the assistant header) and a frozen `reward_transform_matrix`; score = sum(gating *
(rewards @ T)). ArmoRM hard-codes Llama-3's header ids; here they come from `gating_token_pattern`
(default: Llama-3's), so a small vocabulary can carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.utils import ModelOutput

LLAMA3_ASSISTANT_HEADER = [128009, 128006, 78191, 128007, 271]


@dataclass
class MultiObjectiveOutput(ModelOutput):
    rewards: torch.Tensor | None = None
    gating_output: torch.Tensor | None = None
    score: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class GatingNetwork(nn.Module):
    def __init__(self, in_features: int, out_features: int, temperature: float, hidden_dim: int,
                 n_hidden: int) -> None:
        super().__init__()
        self.temperature = temperature
        self.logit_scale = nn.Parameter(torch.ones(1))
        sizes = [in_features] + [hidden_dim] * n_hidden
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.layers.append(nn.Linear(sizes[-1], out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        x = self.layers[-1](x)
        return torch.softmax(x / self.temperature, dim=1) * self.logit_scale[0]


def last_occurrence(ids: list[int], pattern: list[int]) -> int:
    for start in range(len(ids) - len(pattern), -1, -1):
        if ids[start:start + len(pattern)] == pattern:
            return start
    raise ValueError("Token pattern not found in the list.")


class LlamaForRewardModelWithGating(LlamaPreTrainedModel):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.num_objectives = config.num_objectives
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, self.num_objectives, bias=False)
        self.post_init()
        eye = torch.zeros(self.num_objectives, self.num_objectives)
        eye[range(self.num_objectives), range(self.num_objectives)] = 1.0
        self.reward_transform_matrix = nn.Parameter(eye, requires_grad=False)
        self.gating = GatingNetwork(config.hidden_size, self.num_objectives, config.gating_temperature,
                                    config.gating_hidden_dim, config.gating_n_hidden)
        self.pattern = list(getattr(config, "gating_token_pattern", LLAMA3_ASSISTANT_HEADER))

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs) -> MultiObjectiveOutput:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=False).last_hidden_state
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        # As ArmoRM: the token before the first pad (with no pad, or left padding, the last token).
        last = (torch.eq(input_ids, self.config.pad_token_id).int().argmax(-1) - 1) % input_ids.shape[-1]
        rewards = self.regression_layer(hidden[rows, last])
        gate_at = [last_occurrence(ids.tolist(), self.pattern) for ids in input_ids]
        gating = self.gating(hidden[rows, gate_at])
        score = torch.sum(gating * (rewards @ self.reward_transform_matrix), dim=1)
        return MultiObjectiveOutput(rewards=rewards, gating_output=gating, score=score, logits=score)
