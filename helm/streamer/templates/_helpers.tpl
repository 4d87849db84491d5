{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "streamer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "streamer.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "streamer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "streamer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streamer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "streamer.labels" -}}
helm.sh/chart: {{ include "streamer.chart" . }}
{{ include "streamer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: scorer
app.kubernetes.io/part-of: streamer
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "streamer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "streamer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "streamer.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The most replicas worth running: one per input partition unless set lower. */}}
{{- define "streamer.maxReplicas" -}}
{{- $max := int (index . 0) }}
{{- $partitions := int (index . 1) }}
{{- if gt $max 0 }}{{ $max }}{{ else }}{{ $partitions }}{{ end }}
{{- end }}

{{/* Settings that have values of their own; refused in .Values.settings. */}}
{{- define "streamer.reservedSettings" -}}
kafka_bootstrap_servers input_topic output_topic dlq_topic group_id group_instance_id kafka_properties redis_url redis_password redis_key_prefix metrics_port drain_timeout_s labels_topic label_horizon_days monitor_group_id
{{- end }}

{{/* Fail the render, with a message saying what to change, on contradictory values. */}}
{{- define "streamer.validate" -}}
{{- if and .Values.keda.enabled .Values.autoscaling.enabled }}
{{- fail "keda.enabled and autoscaling.enabled are mutually exclusive: both would own the Deployment's replica count. Turn one of them off." }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.drainTimeoutSeconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be greater than drainTimeoutSeconds (%v), or pods are killed mid-drain." .Values.terminationGracePeriodSeconds .Values.drainTimeoutSeconds) }}
{{- end }}
{{- if and .Values.kafka.sasl.enabled (not .Values.kafka.sasl.existingSecret) }}
{{- fail "kafka.sasl.enabled needs kafka.sasl.existingSecret: the name of a Secret with the SASL username and password." }}
{{- end }}
{{- include "streamer.validateRegistry" . }}
{{- $reserved := splitList " " (include "streamer.reservedSettings" .) }}
{{- range $key, $_ := .Values.settings }}
{{- if has $key $reserved }}
{{- fail (printf "settings.%s has a value of its own in this chart (kafka.*, redis.*, metrics.port, drainTimeoutSeconds, monitor.*; group_instance_id is each pod's name): set it there." $key) }}
{{- end }}
{{- end }}
{{- include "streamer.refuseSecrets" . }}
{{- end }}

{{/* The schema registry: its URL in one place, its credentials only from a Secret. */}}
{{- define "streamer.validateRegistry" -}}
{{- $registry := .Values.schemaRegistry }}
{{- if and $registry.url (hasKey .Values.settings "schema_registry_url") }}
{{- fail "schemaRegistry.url and settings.schema_registry_url are both set: keep schemaRegistry.url." }}
{{- end }}
{{- if regexMatch "://[^/@]*:[^/@]*@" $registry.url }}
{{- fail "schemaRegistry.url holds a password: keep the URL without credentials and set schemaRegistry.existingSecret (a Secret with user:password)." }}
{{- end }}
{{- if and $registry.existingSecret (not (or $registry.url (hasKey .Values.settings "schema_registry_url"))) }}
{{- fail "schemaRegistry.existingSecret is set but there is no registry URL: set schemaRegistry.url." }}
{{- end }}
{{- if hasKey .Values.settings "schema_registry_basic_auth_user_info" }}
{{- fail "settings.schema_registry_basic_auth_user_info would be stored in a plain ConfigMap: put user:password in a Secret and set schemaRegistry.existingSecret." }}
{{- end }}
{{- end }}

{{/* Names that hold secrets: librdkafka's sensitive properties and any name with one of
these words. Such values must come from a Secret, never from a ConfigMap. */}}
{{- define "streamer.secretPattern" -}}
(?i)(password|passwd|secret|passphrase|token|credential|private[._-]?key|sasl[._]jaas|basic[._]auth[._]user[._]info|ssl[._]key[._]pem|keytab|sasl[._]oauthbearer[._]config)
{{- end }}

{{/* Fail the render when a plain value looks like a secret or a URL carries credentials. */}}
{{- define "streamer.refuseSecrets" -}}
{{- $pattern := include "streamer.secretPattern" . }}
{{- $hint := "put it in a Secret and reference it with secretEnv (NAME: {secretName, key}), or use kafka.sasl.existingSecret / redis.existingSecret" }}
{{- range $key, $_ := .Values.kafka.properties }}
{{- if regexMatch $pattern $key }}
{{- fail (printf "kafka.properties.%s looks like a secret and would be stored in a plain ConfigMap: %s, e.g. secretEnv.STREAMER_KAFKA_PROP_%s." $key $hint (upper (replace "." "_" $key))) }}
{{- end }}
{{- end }}
{{- range $key, $value := .Values.settings }}
{{- if regexMatch $pattern $key }}
{{- fail (printf "settings.%s looks like a secret and would be stored in a plain ConfigMap: %s, e.g. secretEnv.STREAMER_%s." $key $hint (upper $key)) }}
{{- end }}
{{- if kindIs "map" $value }}
{{- range $inner, $_ := $value }}
{{- if regexMatch $pattern $inner }}
{{- fail (printf "settings.%s.%s looks like a secret and would be stored in a plain ConfigMap: %s." $key $inner $hint) }}
{{- end }}
{{- end }}
{{- else if regexMatch "://[^/@]*:[^/@]*@" (toString $value) }}
{{- fail (printf "settings.%s holds a URL with a password: %s (the URL without credentials stays here)." $key $hint) }}
{{- end }}
{{- end }}
{{- if regexMatch "://[^/@]*:[^/@]*@" .Values.redis.url }}
{{- fail "redis.url holds a password: keep the URL without credentials and set redis.existingSecret (the Secret with the Redis password)." }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if and (hasKey . "value") (regexMatch $pattern (.name | default "")) }}
{{- fail (printf "extraEnv %s looks like a secret with a plain value: %s, or valueFrom.secretKeyRef." .name $hint) }}
{{- end }}
{{- end }}
{{- end }}

{{/* librdkafka properties: the user's, plus the SASL mechanism and protocol (not the secrets). */}}
{{- define "streamer.kafkaProperties" -}}
{{- $props := dict }}
{{- range $key, $value := .Values.kafka.properties }}
{{- $_ := set $props $key (toString $value) }}
{{- end }}
{{- if .Values.kafka.sasl.enabled }}
{{- $_ := set $props "security.protocol" .Values.kafka.sasl.securityProtocol }}
{{- $_ := set $props "sasl.mechanism" .Values.kafka.sasl.mechanism }}
{{- end }}
{{- toJson $props }}
{{- end }}

{{/* The KEDA kafka scaler's name for a SASL mechanism. */}}
{{- define "streamer.kedaSasl" -}}
{{- $m := dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" }}
{{- get $m .Values.kafka.sasl.mechanism }}
{{- end }}
