from django.db import models


class Visit(models.Model):
    tag = models.CharField(max_length=100)
