from __future__ import annotations

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.CreateModel(
            name="LogtoIdentity",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("issuer", models.CharField(max_length=255)),
                ("sub", models.CharField(max_length=255)),
                ("claims_digest", models.CharField(blank=True, default="", max_length=64)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("user", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE,
                                              related_name="logto_identity", to=settings.AUTH_USER_MODEL)),
            ],
            options={"verbose_name": "Logto identity", "verbose_name_plural": "Logto identities"},
        ),
        migrations.AddConstraint(
            model_name="logtoidentity",
            constraint=models.UniqueConstraint(fields=("issuer", "sub"), name="logto_identity_issuer_sub"),
        ),
    ]
