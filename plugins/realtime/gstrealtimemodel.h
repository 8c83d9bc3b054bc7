/* gst-phone-agent
 * Copyright (C) 2026 gst-phone-agent contributors
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * realtimemodel: a phone caller connected to a realtime speech model over
 * the OpenAI Realtime WebSocket protocol (GA or beta dialect).
 */
#pragma once

#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_REALTIME_MODEL (gst_realtime_model_get_type())
G_DECLARE_FINAL_TYPE(GstRealtimeModel, gst_realtime_model, GST, REALTIME_MODEL, GstElement)

#define GST_TYPE_REALTIME_MODEL_PROTOCOL (gst_realtime_model_protocol_get_type())
GType gst_realtime_model_protocol_get_type(void);
#define GST_TYPE_REALTIME_MODEL_TURN_DETECTION (gst_realtime_model_turn_detection_get_type())
GType gst_realtime_model_turn_detection_get_type(void);
#define GST_TYPE_REALTIME_MODEL_EAGERNESS (gst_realtime_model_eagerness_get_type())
GType gst_realtime_model_eagerness_get_type(void);
#define GST_TYPE_REALTIME_MODEL_NOISE_REDUCTION (gst_realtime_model_noise_reduction_get_type())
GType gst_realtime_model_noise_reduction_get_type(void);

G_END_DECLS
