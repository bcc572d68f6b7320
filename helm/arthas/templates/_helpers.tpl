{{/* Chart name. */}}
{{- define "arthas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name, short enough for "-gateway-internal" suffixes. */}}
{{- define "arthas.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "arthas.relay.fullname" -}}{{ include "arthas.fullname" . }}-relay{{- end -}}
{{- define "arthas.gateway.fullname" -}}{{ include "arthas.fullname" . }}-gateway{{- end -}}
{{- define "arthas.gateway.internalName" -}}{{ include "arthas.fullname" . }}-gateway-internal{{- end -}}

{{- define "arthas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "arthas.labels" -}}
helm.sh/chart: {{ include "arthas.chart" . }}
app.kubernetes.io/name: {{ include "arthas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: arthas
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "relay"). */}}
{{- define "arthas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "arthas.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "arthas.componentLabels" -}}
{{ include "arthas.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "arthas.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "arthas.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "arthas.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the internal and ticket secrets. */}}
{{- define "arthas.secretName" -}}
{{- default (printf "%s-secrets" (include "arthas.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The Secret and key holding the Redis URL. */}}
{{- define "arthas.redisSecretName" -}}
{{- if .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecret -}}
{{- else -}}
{{- printf "%s-redis" (include "arthas.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Relay terminationGracePeriodSeconds: explicit, or preStop + grace + 10 s. */}}
{{- define "arthas.relay.terminationGrace" -}}
{{- $r := .Values.relay -}}
{{- $grace := div (add $r.shutdownGraceMs 999) 1000 -}}
{{- $min := add $r.preStopSleepSeconds $grace -}}
{{- if gt (int $r.terminationGracePeriodSeconds) 0 -}}
{{- if le (int $r.terminationGracePeriodSeconds) (int $min) -}}
{{- fail (printf "relay.terminationGracePeriodSeconds (%d) must exceed relay.preStopSleepSeconds + relay.shutdownGraceMs/1000 (%d)" (int $r.terminationGracePeriodSeconds) (int $min)) -}}
{{- end -}}
{{- $r.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add $min 10 -}}
{{- end -}}
{{- end -}}

{{/* Default topology spread: nodes, then zones, never blocking scheduling. */}}
{{- define "arthas.topologySpread" -}}
{{- $selector := include "arthas.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml -}}
{{- if .constraints }}
{{- range .constraints }}
-{{- toYaml (merge (dict) . (dict "labelSelector" (dict "matchLabels" $selector))) | nindent 2 }}
{{- end }}
{{- else }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- toYaml $selector | nindent 6 }}
{{- end }}
{{- end -}}

{{/* Environment shared by both components: Redis, logs, edge. */}}
{{- define "arthas.commonEnv" -}}
- name: ARTHAS_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "arthas.redisSecretName" . }}
      key: {{ .Values.redis.existingSecretKey }}
- name: ARTHAS_INTERNAL_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "arthas.secretName" . }}
      key: {{ .Values.secrets.internalSecretKey }}
{{- end -}}

{{/* Redis settings (not the URL: that is in a Secret). */}}
{{- define "arthas.redisConfig" -}}
ARTHAS_REDIS_MODE: {{ .Values.redis.mode | quote }}
ARTHAS_REDIS_SENTINEL_MASTER: {{ .Values.redis.sentinelMaster | quote }}
ARTHAS_REDIS_POOL_SIZE: {{ .Values.redis.poolSize | int64 | quote }}
ARTHAS_REDIS_MAX_IN_FLIGHT: {{ .Values.redis.maxInFlight | int64 | quote }}
ARTHAS_REDIS_COMMAND_TIMEOUT_MS: {{ .Values.redis.commandTimeoutMs | int64 | quote }}
ARTHAS_REDIS_PUBLISH_TIMEOUT_MS: {{ .Values.redis.publishTimeoutMs | int64 | quote }}
ARTHAS_EXPIRED_ROOM_GRACE_SECS: {{ .Values.redis.expiredRoomGraceSecs | int64 | quote }}
{{- end -}}

{{- define "arthas.logConfig" -}}
ARTHAS_LOG: {{ .Values.log.level | quote }}
ARTHAS_LOG_FORMAT: {{ .Values.log.format | quote }}
ARTHAS_OTLP_ENDPOINT: {{ .Values.tracing.otlpEndpoint | quote }}
ARTHAS_OTLP_SERVICE_NAME: {{ .Values.tracing.otlpServiceName | quote }}
{{- end -}}

{{/* The pod's identity for trace resources (OTEL_RESOURCE_ATTRIBUTES), from
     the downward API; a later OTEL_RESOURCE_ATTRIBUTES in extraEnv wins. */}}
{{- define "arthas.otelEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),k8s.node.name=$(NODE_NAME)"
{{- end -}}

{{/* The TLS Secret (tls.enabled). */}}
{{- define "arthas.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "arthas.fullname" .)) .Values.tls.secretName -}}
{{- end -}}

{{/* http or https: what the pods speak with tls.enabled. */}}
{{- define "arthas.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* TLS settings shared by both components (ConfigMap data). */}}
{{- define "arthas.tlsConfig" -}}
ARTHAS_TLS_RELOAD_INTERVAL_MS: {{ .Values.tls.reloadIntervalMs | int64 | quote }}
{{- if .Values.tls.enabled }}
ARTHAS_TLS_CERT: {{ printf "%s/tls.crt" .Values.tls.mountPath | quote }}
ARTHAS_TLS_KEY: {{ printf "%s/tls.key" .Values.tls.mountPath | quote }}
{{- end }}
{{- end -}}

{{/* The TLS Secret's volume and mount (tls.enabled): a directory mount, so
kubelet's atomic update of a renewed Secret reaches the files. */}}
{{- define "arthas.tlsVolume" -}}
- name: tls
  secret:
    secretName: {{ include "arthas.tlsSecretName" . }}
{{- end -}}
{{- define "arthas.tlsVolumeMount" -}}
- name: tls
  mountPath: {{ .Values.tls.mountPath }}
  readOnly: true
{{- end -}}

{{/* externalTrafficPolicy and loadBalancerSourceRanges of a public Service
(only where Kubernetes accepts them). */}}
{{- define "arthas.serviceExposure" -}}
{{- if and .externalTrafficPolicy (ne .type "ClusterIP") }}
externalTrafficPolicy: {{ .externalTrafficPolicy }}
{{- end }}
{{- if and .loadBalancerSourceRanges (eq .type "LoadBalancer") }}
loadBalancerSourceRanges:
  {{- toYaml .loadBalancerSourceRanges | nindent 2 }}
{{- end }}
{{- end -}}
