/* gst-phone-agent: finding the call shared by twiliosrc and twiliosink */
#include "gsttwiliocall.h"

static PaCall *query_peer(GstPad *pad) {
  if (!pad)
    return nullptr;
  GstQuery *query = gst_query_new_context(PA_CALL_CONTEXT_TYPE);
  PaCall *call = nullptr;
  if (gst_pad_peer_query(pad, query)) {
    GstContext *ctx = nullptr;
    gst_query_parse_context(query, &ctx);
    call = pa_call_from_context(ctx);
  }
  gst_query_unref(query);
  return call;
}

PaCall *gst_twilio_find_call(GstElement *element, GstPad *pad) {
  /* 1. a peer that has it (e.g. twiliosrc linked straight to twiliosink) */
  if (PaCall *call = query_peer(pad))
    return call;
  /* 2. ask the bin and the application: the bin answers from the contexts
   * elements posted with have-context; the server sets it on the pipeline */
  GstMessage *msg = gst_message_new_need_context(GST_OBJECT_CAST(element), PA_CALL_CONTEXT_TYPE);
  gst_element_post_message(element, msg);
  GstContext *ctx = gst_element_get_context(element, PA_CALL_CONTEXT_TYPE);
  PaCall *call = pa_call_from_context(ctx);
  if (ctx)
    gst_context_unref(ctx);
  return call;
}

gboolean gst_twilio_answer_context_query(GstQuery *query, PaCall *call) {
  const gchar *type = nullptr;
  if (!call || !gst_query_parse_context_type(query, &type) || g_strcmp0(type, PA_CALL_CONTEXT_TYPE) != 0)
    return FALSE;
  GstContext *ctx = pa_call_context_new(call);
  gst_query_set_context(query, ctx);
  gst_context_unref(ctx);
  return TRUE;
}

GstClockTime gst_twilio_running_time(GstElement *element) {
  GstClock *clock = gst_element_get_clock(element);
  if (!clock)
    return GST_CLOCK_TIME_NONE;
  GstClockTime now = gst_clock_get_time(clock);
  gst_object_unref(clock);
  GstClockTime base = gst_element_get_base_time(element);
  return now >= base ? now - base : 0;
}
