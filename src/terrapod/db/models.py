"""Imports every domain's models so ``Base.metadata`` is complete (Alembic, tests)."""

from terrapod.actions import models as action_models
from terrapod.agentpools import models as agentpool_models
from terrapod.auth import models as auth_models
from terrapod.configversions import models as configversion_models
from terrapod.notifications import models as notification_models
from terrapod.organizations import models as organization_models
from terrapod.runs import models as run_models
from terrapod.runtasks import models as runtask_models
from terrapod.runtriggers import models as runtrigger_models
from terrapod.state import models as state_models
from terrapod.users import models as user_models
from terrapod.variables import models as variable_models
from terrapod.varsets import models as varset_models
from terrapod.workspaces import models as workspace_models

__all__ = [
    "action_models",
    "agentpool_models",
    "auth_models",
    "configversion_models",
    "notification_models",
    "organization_models",
    "run_models",
    "runtask_models",
    "runtrigger_models",
    "state_models",
    "user_models",
    "variable_models",
    "varset_models",
    "workspace_models",
]
