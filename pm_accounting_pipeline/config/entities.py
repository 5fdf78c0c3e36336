"""Mapping-document section `entity_assignment`: which legal entity a time entry belongs to.

A raw row can be placed by four rules: `project` (an explicit project -> entity map here), `client`
(the entity that bills the client, `clients[].entity`), `person` (the employer in `group.people`)
and `pm_account` (the Harvest account or landing folder the row came from). The rules are tried in
`precedence` order and the first that yields an entity decides; the row records which one.
The methodology is in docs/multi-currency-and-allocations.md ("Entity assignment").
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

EntityRule = Literal["project", "client", "person", "pm_account"]
ENTITY_RULES: tuple[str, ...] = ("project", "client", "person", "pm_account")
DEFAULT_PRECEDENCE: tuple[str, ...] = ENTITY_RULES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntityAssignment(_Strict):
    """The rules that place a raw row in its legal entity, and their order.

    `projects` maps a project (customer_job or project code) to the entity that bills it, for
    projects billed by another entity than their client's. Rules that cannot decide a row (no such
    project, unknown client, person not in `group.people`) pass it to the next rule; a row no
    rule decides is quarantined as `no_entity`.
    """

    precedence: list[EntityRule] = list(DEFAULT_PRECEDENCE)
    projects: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self) -> EntityAssignment:
        if not self.precedence:
            raise ValueError("precedence needs at least one rule (project, client, person, pm_account)")
        dup = sorted({r for r in self.precedence if self.precedence.count(r) > 1})
        if dup:
            raise ValueError(f"precedence lists {dup} more than once")
        order = list(self.precedence)
        if "project" in order and "client" in order and order.index("project") > order.index("client"):
            raise ValueError(
                "precedence: project must come before client (a project's entity overrides its "
                "client's; after client it would never apply)"
            )
        if self.projects and "project" not in order:
            raise ValueError("projects are listed but precedence has no project rule to use them")
        return self

    @property
    def is_default(self) -> bool:
        return self == EntityAssignment()


def check_entity_assignment(v: EntityAssignment, info: ValidationInfo) -> EntityAssignment:
    """References into the rest of the document: entity ids and project keys."""
    entities = info.data.get("entities")
    projects = info.data.get("projects")
    known = sorted(e.id for e in entities) if entities is not None else None
    problems: list[str] = []
    owner: dict[int, tuple[str, str]] = {}
    for key, entity in v.projects.items():
        if known is not None and entity not in known:
            problems.append(f"projects.{key}: unknown entity {entity!r} (known: {known})")
        if projects is None:
            continue
        hits = [i for i, p in enumerate(projects) if key in (p.customer_job, p.code)]
        if not hits:
            problems.append(f"projects.{key}: unknown project (use a customer_job or project code)")
        for i in hits:
            if i in owner and owner[i][1] != entity:
                problems.append(
                    f"projects.{key}: project {projects[i].customer_job!r} is already assigned to "
                    f"{owner[i][1]!r} as {owner[i][0]!r}"
                )
            owner.setdefault(i, (key, entity))
    if problems:
        raise ValueError("; ".join(problems))
    return v


# Left at its defaults the section is left out of dumps, so adding it did not change the rule
# version (content hash) of documents that do not use it.
EntityAssignmentField = Annotated[
    EntityAssignment,
    AfterValidator(check_entity_assignment),
    Field(exclude_if=lambda v: v == EntityAssignment()),
]
